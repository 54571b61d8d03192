"""Admin token: every route refuses strangers; bearer for APIs; login cookie and CSRF for pages."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.settings import Settings
from taskflow.web.auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE, AdminAuth
from tests.helpers import wait_finished
from tests.sse import EventStream

TOKEN = "s3cret-admin-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
#: Routes under /tasks that are meant to answer without credentials.
PUBLIC = {"/tasks/login", "/tasks/dashboard/{asset}"}


def make_app(token: str | None = TOKEN) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(shutdown_timeout=0.2)
    app = FastAPI()
    TaskAdmin(app, manager, admin_token=token)

    @manager.task()
    def boom() -> None:
        raise RuntimeError("boom")

    @app.post("/boom")
    def enqueue(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(boom)}

    return app, manager


@pytest.fixture
async def secured() -> AsyncIterator[tuple[FastAPI, TaskManager, httpx.AsyncClient]]:
    app, manager = make_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, manager, client


async def login(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/tasks/login", data={"token": token})


#: Routes kept out of the OpenAPI schema that need credentials too.
HIDDEN = [("GET", "/tasks/dashboard"), ("POST", "/tasks/logout")]


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation under /tasks, plus the hidden pages."""
    found = [
        (method.upper(), path.replace("{task_id}", "0" * 32))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/tasks") and path not in PUBLIC
        for method in operations
    ]
    return found + HIDDEN


async def test_every_route_under_the_admin_path_refuses_an_unauthenticated_client(secured):
    app, _, client = secured
    routes = protected_routes(app)
    assert {path for _, path in routes} >= {"/tasks", "/tasks/metrics", "/tasks/stream"}
    assert len(routes) >= 7  # list, metrics, detail, retry, stream, dashboard, logout
    for method, path in routes:
        response = await client.request(method, path)
        if path == "/tasks/dashboard":
            assert response.status_code == 303, path
            assert response.headers["location"] == "/tasks/login"
        else:
            assert response.status_code == 401, (method, path)
            assert response.json()["detail"].startswith("authentication required")
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_stream_refuses_an_unauthenticated_client(secured):
    app, _, _ = secured
    async with EventStream(app, "/tasks/stream") as stream:
        assert stream.status == 401
        assert "authentication required" in await stream.body()
    async with EventStream(app, "/tasks/stream", headers=BEARER) as stream:
        assert stream.status == 200
        assert (await stream.next()).event == "hello"


async def test_health_endpoints_stay_open(secured):
    _, _, client = secured
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_bearer_token_works_and_needs_no_csrf(secured):
    _, manager, client = secured
    assert (await client.get("/tasks", headers=BEARER)).status_code == 200
    assert (await client.get("/tasks/metrics", headers=BEARER)).status_code == 200
    wrong = {"Authorization": "Bearer not-it"}
    assert (await client.get("/tasks", headers=wrong)).status_code == 401
    assert (await client.get("/tasks", headers={"Authorization": TOKEN})).status_code == 401
    failed_id = (await client.post("/boom")).json()["task_id"]
    await wait_finished(manager, failed_id)
    response = await client.post(f"/tasks/{failed_id}/retry", headers=BEARER)
    assert response.status_code == 202


async def test_a_wrong_bearer_token_is_refused_even_with_a_valid_cookie(secured):
    _, _, client = secured
    await login(client)
    assert (await client.get("/tasks")).status_code == 200
    assert (await client.get("/tasks", headers={"Authorization": "Bearer x"})).status_code == 401


async def test_login_form_sets_an_httponly_strict_session_cookie_without_the_token(secured):
    _, _, client = secured
    form = await client.get("/tasks/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    response = await login(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/tasks/dashboard"
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    csrf = next(c for c in cookies if c.startswith(f"{CSRF_COOKIE}="))
    assert "HttpOnly" in session and "HttpOnly" not in csrf
    for cookie in (session, csrf):
        assert "SameSite=strict" in cookie
        assert "Path=/tasks" in cookie
        assert "Secure" not in cookie  # plain http here
        assert TOKEN not in cookie
    page = await client.get("/tasks/dashboard")
    assert page.status_code == 200
    csrf_value = client.cookies[CSRF_COOKIE]
    assert f'<meta name="taskflow-csrf" content="{csrf_value}">' in page.text
    # Logged in, the login form sends you on to the dashboard.
    assert (await client.get("/tasks/login")).status_code == 303


async def test_cookies_are_secure_over_https():
    app, _ = make_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        response = await login(client)
    assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


async def test_a_wrong_token_in_the_login_form_sets_nothing(secured, caplog):
    _, _, client = secured
    caplog.set_level(logging.WARNING, logger="taskflow.web.auth")
    response = await login(client, "guess")
    assert response.status_code == 401
    assert "not right" in response.text
    assert "set-cookie" not in response.headers
    assert (await client.get("/tasks")).status_code == 401
    assert any("failed login" in r.getMessage() for r in caplog.records)


async def test_cookie_requests_that_change_state_need_the_csrf_token(secured):
    _, manager, client = secured
    failed_id = (await client.post("/boom")).json()["task_id"]
    await wait_finished(manager, failed_id)
    await login(client)
    retry = f"/tasks/{failed_id}/retry"
    missing = await client.post(retry)
    assert missing.status_code == 403
    assert "CSRF" in missing.json()["detail"]
    assert (await client.post(retry, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
    good = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    cross = {**good, "Origin": "https://evil.example"}
    assert (await client.post(retry, headers=cross)).status_code == 403
    fetch_cross = {**good, "Sec-Fetch-Site": "cross-site"}
    assert (await client.post(retry, headers=fetch_cross)).status_code == 403
    same = {**good, "Origin": "http://test", "Sec-Fetch-Site": "same-origin"}
    response = await client.post(retry, headers=same)
    assert response.status_code == 202


async def test_forged_or_expired_sessions_are_refused(secured):
    _, _, client = secured
    auth = AdminAuth(TOKEN)
    other = AdminAuth("another-token")
    for value in (
        "",
        "garbage",
        other.new_session(),  # signed with a different token
        auth.new_session(now=time.time() - SESSION_MAX_AGE - 5),  # expired
        auth.new_session(now=time.time() + 3600),  # from the future
        re.sub(r"\.(.)", lambda m: "." + ("a" if m[1] != "a" else "b"), auth.new_session()),
    ):
        client.cookies.set(SESSION_COOKIE, value, path="/tasks")
        assert (await client.get("/tasks")).status_code == 401, value
    client.cookies.set(SESSION_COOKIE, auth.new_session(), path="/tasks")
    assert (await client.get("/tasks")).status_code == 200


async def test_logout_ends_the_session(secured):
    _, _, client = secured
    await login(client)
    cookie = client.cookies[SESSION_COOKIE]
    csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    response = await client.post("/tasks/logout", headers=csrf)
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in c for c in cleared)
    assert (await client.get("/tasks")).status_code == 401
    # The old cookie, kept by someone (a copy, another tab, a thief), is refused too.
    client.cookies.set(SESSION_COOKIE, cookie, path="/tasks")
    assert (await client.get("/tasks")).status_code == 401
    assert (await client.get("/tasks/dashboard")).headers["location"] == "/tasks/login"
    assert (await client.get("/tasks/login")).status_code == 200
    # Logging in again gives a new session, which works.
    client.cookies.clear()
    await login(client)
    assert client.cookies[SESSION_COOKIE] != cookie
    assert (await client.get("/tasks")).status_code == 200


async def test_a_logout_the_backend_cannot_store_is_a_503_that_clears_nothing(tmp_path):
    manager = TaskManager(snapshot_db=tmp_path / "tasks.db", shutdown_timeout=0.2)
    app = FastAPI()
    TaskAdmin(app, manager, admin_token=TOKEN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await login(client)
            assert manager.backend is not None
            await manager.backend.close()  # the backend stops answering
            csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
            response = await client.post("/tasks/logout", headers=csrf)
            assert response.status_code == 503
            assert "every instance" in response.json()["detail"]
            assert "set-cookie" not in response.headers  # the browser can try again
            assert (await client.get("/tasks")).status_code == 401  # ended here all the same
            await manager.backend.open()


async def test_a_login_posted_from_another_site_is_refused(secured):
    _, _, client = secured
    response = await client.post(
        "/tasks/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


async def test_tokens_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = AdminAuth(TOKEN)
    assert auth.token_matches(TOKEN) and not auth.token_matches("x")
    assert await auth.session(auth.new_session()) is not None
    assert len(calls) == 3


async def test_without_a_token_everything_is_open_and_a_warning_says_so(caplog):
    caplog.set_level(logging.WARNING, logger="taskflow")
    app, _ = make_app(token=None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/tasks")).status_code == 200
            assert (await client.get("/tasks/dashboard")).status_code == 200
            # Open, but still not forgeable from another site.
            forged = await client.post(
                "/tasks/" + "0" * 32 + "/retry", headers={"Origin": "https://evil.example"}
            )
            assert forged.status_code == 403
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dashboard and the API under /tasks are open" in r.getMessage() for r in warnings)


async def test_with_a_token_there_is_no_open_warning(caplog):
    caplog.set_level(logging.INFO, logger="taskflow")
    app, _ = make_app()
    async with app.router.lifespan_context(app):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert any("taskflow started" in m for m in messages)  # the startup was captured
    assert not any("are open" in m for m in messages)


def test_the_token_comes_from_settings_only(monkeypatch):
    monkeypatch.setenv("TASKFLOW_ADMIN_TOKEN", "from-env")
    assert Settings.from_env().admin_token == "from-env"
    admin = TaskAdmin(FastAPI(), TaskManager())  # the library itself never reads the environment
    assert not admin.auth.enabled
    with pytest.raises(ValueError, match="must not be empty"):
        TaskAdmin(FastAPI(), TaskManager(), admin_token="  ")


#: Session cookie values that must be a plain 401, never a 500 (raw bytes, as a server gets them).
HOSTILE_COOKIES = [
    b"\xb2.x",  # '\xb2'.isdigit() is True, int('\xb2') raises
    b"1" * 4301 + b".x",  # more digits than int() converts
    b"\xb2\xb3" + b".abcdefghijklmnopqrstuv." + b"0" * 64,
    b"\xff\xfe\x00",
    b'"quoted\\"',
    b"..",
    b"9" * 20_000,
]


@pytest.mark.parametrize("cookie", HOSTILE_COOKIES)
async def test_hostile_session_cookies_are_refused_not_crashed_on(secured, cookie):
    _, _, client = secured
    headers = [(b"cookie", b"taskflow_session=" + cookie)]
    api = await client.get("/tasks", headers=headers)
    assert api.status_code == 401
    assert (await client.get("/tasks/dashboard", headers=headers)).status_code == 303
    assert (await client.get("/tasks/login", headers=headers)).status_code == 200
    assert (await client.post("/tasks/logout", headers=headers)).status_code == 401
    assert (await client.get("/readyz")).status_code == 200


#: Authorization headers a proxy or a browser may add, next to (or instead of) the cookie.
AUTHORIZATIONS = [
    None,
    "Basic dXNlcjpwYXNz",
    "Digest username=x",
    "Negotiate abc",
    "Bearer",
    "Bearer wrong",
    f"Bearer {TOKEN}",
    "bearer " + TOKEN,
    "\u00e9\u00e9",
    "",
]


@pytest.mark.parametrize("authorization", AUTHORIZATIONS)
@pytest.mark.parametrize("cookie", ["valid", "junk", None])
async def test_no_redirect_loop_whatever_headers_come_along(secured, authorization, cookie):
    _, _, client = secured
    headers: list[tuple[bytes, bytes]] = []  # raw, as a server receives them
    if cookie == "valid":
        await login(client)
    elif cookie == "junk":
        headers.append((b"cookie", b"taskflow_session=\xb2.x"))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    for start in ("/tasks/dashboard", "/tasks/login"):
        path, seen = start, []
        while True:
            response = await client.get(path, headers=headers)
            if response.status_code != 303:
                break
            path = response.headers["location"]
            assert path not in seen, f"loop: {[*seen, path]}"
            seen.append(path)
        assert response.status_code == 200
        page = "dashboard" if path.endswith("/dashboard") else "login"
        # Any other scheme than Bearer is not a token: then the cookie decides.
        scheme = (authorization or "").partition(" ")[0].lower()
        if scheme == "bearer":
            expected = "dashboard" if authorization.partition(" ")[2] == TOKEN else "login"
        else:
            expected = "dashboard" if cookie == "valid" else "login"
        assert page == expected, (start, authorization, cookie)


async def test_a_proxys_basic_auth_does_not_hide_the_session(secured):
    _, _, client = secured
    await login(client)
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert (await client.get("/tasks", headers=basic)).status_code == 200
    csrf = {**basic, "X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    assert (await client.post("/tasks/logout", headers=csrf)).status_code == 204


@pytest.fixture
async def beating() -> AsyncIterator[tuple[FastAPI, TaskAdmin, httpx.AsyncClient]]:
    """A secured app whose stream beats every 0.1 s (and so re-checks its session as often)."""
    app = FastAPI()
    manager = TaskManager(shutdown_timeout=0.2)
    admin = TaskAdmin(app, manager, admin_token=TOKEN, stream_heartbeat=0.1)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, admin, client


def session_ended(frame) -> bool:
    return frame.event == "bye" and json.loads(frame.data) == {"reason": "session ended"}


async def test_the_stream_closes_when_its_session_is_revoked(beating):
    app, _, client = beating
    await login(client)
    cookie = {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
    async with EventStream(app, "/tasks/stream", headers=cookie) as stream:
        await stream.until(lambda f: f.event == "hello")
        await stream.until(lambda f: f.comment == "ping")  # alive while the session is
        csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
        assert (await client.post("/tasks/logout", headers=csrf)).status_code == 204
        await stream.until(session_ended, timeout=1.0)
        assert await stream.next(timeout=1.0) is None  # and the response ends


async def test_the_stream_closes_when_its_session_expires(beating):
    app, admin, _ = beating
    # Issue times are whole seconds: this one has between 0.5 and 1.5 s left.
    almost_expired = admin.auth.new_session(now=time.time() - SESSION_MAX_AGE + 1.5)
    cookie = {"cookie": f"{SESSION_COOKIE}={almost_expired}"}
    async with EventStream(app, "/tasks/stream", headers=cookie) as stream:
        assert stream.status == 200
        await stream.until(lambda f: f.event == "hello")
        await stream.until(session_ended, timeout=3.0)
        assert await stream.next(timeout=1.0) is None


async def test_a_bearer_stream_is_not_cut_by_session_checks(beating):
    app, _, _ = beating
    async with EventStream(app, "/tasks/stream", headers=BEARER) as stream:
        await stream.until(lambda f: f.event == "hello")
        for _ in range(5):
            frame = await stream.until(lambda f: f.comment == "ping" or f.event == "bye")
            assert frame.comment == "ping"
