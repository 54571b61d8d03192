"""Hostile input gets a 4xx and touches nothing else: generated cursors, cookies, headers and query
strings against the API on both backends, with /readyz unchanged after every one of them."""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskflow import TaskAdmin, TaskManager
from taskflow.backends.base import SnapshotBackend
from taskflow.backends.sqlite import SqliteBackend
from taskflow.web.auth import LoginLimiter
from tests.helpers import wait_until_idle

TOKEN = "hostile-input-test-token"


@dataclass
class Target:
    kind: str
    manager: TaskManager
    client: httpx.AsyncClient
    known_id: str


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A secured app on a fresh SQLite file or Redis prefix, with some history stored."""
    backend: SnapshotBackend
    prefix = f"tftest-{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        backend = SqliteBackend(tmp_path / "tasks.db")
    else:
        from taskflow.backends.redis import RedisBackend

        backend = RedisBackend(request.getfixturevalue("redis_url"), prefix=prefix)
    manager = TaskManager(snapshot_backend=backend, shutdown_timeout=0.2)
    app = FastAPI()
    admin = TaskAdmin(app, manager, admin_token=TOKEN, display_func_args=True)
    # Wrong tokens are part of the input: no limit, so valid requests keep reaching the backend.
    admin.auth.limiter = LoginLimiter(per_address=10**9, total=10**9)

    @manager.task()
    def fail(n: int) -> None:
        raise RuntimeError(f"failure {n}")

    @app.post("/fail")
    def enqueue(background_tasks: BackgroundTasks, n: int = 0) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(fail, n)}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = (await client.post("/fail")).json()["task_id"]
            for n in range(4):
                await client.post("/fail", params={"n": n})
            await wait_until_idle(manager)
            yield Target(request.param, manager, client, first)
    if request.param == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(request.getfixturevalue("redis_url"))
        keys = [key async for key in redis.scan_iter(match=f"{{{prefix}}}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


# -- what a client may send -------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included
    | st.text(),  # lone surrogates included (json.dumps escapes them)
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: Near misses of an issued cursor, ``[sort time, task id]``: where parsers slip.
pairs = st.tuples(
    st.one_of(st.floats(), st.integers(), st.sampled_from(["nan", "inf", "1.5"]), json_values),
    st.one_of(st.text(), json_values),
).map(lambda pair: b64(json.dumps(list(pair)).encode()))
cursors = st.one_of(
    pairs,
    pairs,
    json_values.map(lambda value: b64(json.dumps(value).encode())),
    st.integers(1, 5000).map(lambda depth: b64(b"[" * depth + b"]" * depth)),
    st.integers(500, 5000).map(lambda depth: b64(b"[" * depth)),
    st.binary(max_size=300).map(b64),
    st.text(max_size=300),
    st.integers(1000, 20_000).map(lambda n: "A" * n),  # a server takes lines of ~16 KiB+
)
#: Values for every query parameter the API has, and then some.
values = st.one_of(
    cursors,
    st.text(max_size=50),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "1001", "9" * 5000, "true"]),
    st.sampled_from(["2024-01-01T00:00:00+23:59", "0001-01-01T00:00:00-23:59", "9999-12-31"]),
    st.sampled_from(["failed", "success", "pending", "x" * 10_000]),
    st.binary(max_size=50).map(lambda raw: raw.decode("latin-1")),
)
names = st.sampled_from(
    [
        "cursor",
        "status",
        "func_name",
        "limit",
        "since",
        "until",
        "instance_id",
        "id_contains",
        "before",
        "tag",
    ]
) | st.text(max_size=10)


def encode_query(pairs: list[tuple[str, str]]) -> bytes:
    def part(text: str) -> str:
        return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")

    return "&".join(f"{part(name)}={part(value)}" for name, value in pairs).encode()


#: Raw header values (what a server hands the app: any byte but CR, LF and NUL).
raw_values = st.binary(max_size=120).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)
cookie_values = st.one_of(
    raw_values,
    st.sampled_from([b"\xb2.x", b"1" * 4301 + b".x", b"..", b"\xb2\xb3.a.b"]),
    st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
headers = st.lists(
    st.one_of(
        st.tuples(st.just(b"cookie"), cookie_values.map(lambda v: b"taskflow_session=" + v)),
        st.tuples(st.just(b"cookie"), raw_values),
        st.tuples(
            st.just(b"authorization"),
            st.sampled_from([b"Bearer ", b"Basic ", b"bearer ", b"", b"Digest "]).flatmap(
                lambda scheme: raw_values.map(lambda v: scheme + v)
            ),
        ),
        st.tuples(
            st.sampled_from(
                [
                    b"origin",
                    b"referer",
                    b"host",
                    b"x-forwarded-host",
                    b"sec-fetch-site",
                    b"x-csrf-token",
                    b"if-none-match",
                    b"content-type",
                    b"accept",
                    b"content-length",
                ]
            ),
            st.one_of(raw_values, st.sampled_from([b"http://[", b"[", b"http://[::1", b"::"])),
        ),
    ),
    max_size=4,
)
#: Every route under the admin path (the stream, endless, has the API's guard: see
#: tests/web/auth/test_auth.py).
routes = st.sampled_from(
    [
        ("GET", "/tasks"),
        ("GET", "/tasks/"),
        ("GET", "/tasks/metrics"),
        ("GET", "/tasks/{id}"),
        ("POST", "/tasks/{id}/retry"),
        ("POST", "/tasks/bulk/retry"),
        ("POST", "/tasks/bulk/purge"),
        ("GET", "/tasks/audit"),
        ("POST", "/tasks/{id}/cancel"),
        ("GET", "/tasks/{id}/logs"),
        ("GET", "/tasks/dashboard"),
        ("GET", "/tasks/dashboard/app.js"),
        ("GET", "/tasks/dashboard/control.js"),
        ("GET", "/tasks/login"),
        ("POST", "/tasks/login"),
        ("POST", "/tasks/logout"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    ]
)
task_ids = st.one_of(st.just("known"), st.text(max_size=300))


#: Filters that are valid, to go with a cursor: the listing then reaches the backend with it.
valid_filters = st.lists(
    st.sampled_from(
        [
            ("status", "failed"),
            ("func_name", "fail"),
            ("instance_id", "x"),
            ("limit", "2"),
            ("tag", "tenant:acme"),
        ]
    ),
    max_size=2,
)


@st.composite
def cursor_requests(draw: Any) -> dict[str, Any]:
    """The listing with the right token, a generated cursor and valid filters if any."""
    query = [("cursor", draw(cursors)), *draw(valid_filters)]
    spec = {"method": "GET", "path": "/tasks", "task_id": "known", "query": query}
    return {**spec, "headers": [], "bearer": True, "body": b""}


@st.composite
def any_requests(draw: Any) -> dict[str, Any]:
    """Any route, generated parameters, headers and body; mostly with the right token too."""
    method, path = draw(routes)
    return {
        "method": method,
        "path": path,
        "task_id": draw(task_ids),
        "query": draw(st.lists(st.tuples(names, values), max_size=4)),
        "headers": draw(headers),
        "bearer": draw(st.sampled_from([True, True, False])),
        "body": draw(st.binary(max_size=5000)) if method == "POST" else b"",
    }


requests = st.one_of(cursor_requests(), any_requests())


def request(method: str, path: str, query: dict[str, str], headers: Any = ()) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "task_id": "known",
        "query": list(query.items()),
        "headers": list(headers),
        "bearer": True,
        "body": b"",
    }


KNOWN = [
    request("GET", "/tasks", {"cursor": b64(json.dumps([math.nan, "x"]).encode())}),
    request("GET", "/tasks", {"cursor": b64(b'["nan", "x"]')}),
    request("GET", "/tasks", {"cursor": b64(b"[" * 3000)}),
    request("GET", "/tasks", {"cursor": b64(b'[1.0, "\\ud800"]')}),
    request("GET", "/tasks", {"cursor": b64(b'[1e308, "x"]'), "instance_id": "x"}),
    request("GET", "/tasks", {"cursor": b64(b'[-1e308, "x"]'), "status": "failed"}),
    request("GET", "/tasks", {"since": "0001-01-01T00:00:00-23:59"}),
    request("GET", "/tasks", {}, [(b"cookie", b"taskflow_session=\xb2.x")]),
    request("GET", "/tasks", {}, [(b"cookie", b"taskflow_session=" + b"1" * 4301 + b".x")]),
    request("POST", "/tasks/known/retry", {}, [(b"origin", b"http://[")]),
    request("GET", "/tasks", {"tag": "a:\ud800"}),
    request("GET", "/tasks", {"tag": "a:\x00", "cursor": b64(b'[1.0, "x"]')}),
    request("POST", "/tasks/login", {}, [(b"host", b"[")]),
]


async def send(target: Target, spec: dict[str, Any]) -> httpx.Response:
    task_id = target.known_id if spec["task_id"] == "known" else spec["task_id"]
    segment = quote_from_bytes(task_id.encode("utf-8", "surrogatepass"), safe="")
    url = httpx.URL(
        "http://test" + spec["path"].replace("{id}", segment), query=encode_query(spec["query"])
    )
    raw = list(spec["headers"])
    if spec["bearer"] and not any(name == b"authorization" for name, _ in raw):
        raw.append((b"authorization", f"Bearer {TOKEN}".encode()))
    return await target.client.request(spec["method"], url, headers=raw, content=spec["body"])


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=requests)
@example(spec=KNOWN[0])
@example(spec=KNOWN[1])
@example(spec=KNOWN[2])
@example(spec=KNOWN[3])
@example(spec=KNOWN[4])
@example(spec=KNOWN[5])
@example(spec=KNOWN[6])
@example(spec=KNOWN[7])
@example(spec=KNOWN[8])
@example(spec=KNOWN[9])
@example(spec=KNOWN[10])
@example(spec=KNOWN[11])
@example(spec=KNOWN[12])
async def test_hostile_requests_get_a_4xx_and_leave_readiness_alone(target, spec):
    response = await send(target, spec)
    assert response.status_code < 500, (spec, response.status_code)
    ready = await target.client.get("/readyz")
    assert ready.status_code == 200, (spec, ready.json())
    assert ready.json()["backend_reachable"] is True


# -- bulk actions: generated JSON bodies --------------------------------------------------------

bulk_values = st.one_of(
    json_values,
    st.sampled_from(["failed", "interrupted", "success", "pending", "running", "", "x" * 600]),
    st.sampled_from(
        [
            "2024-01-01T00:00:00+23:59",
            "0001-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59+00:00",
            "9999-12-31T23:59:59-23:59",
            "2024-02-30",
            "1e999",
        ]
    ),
    st.sampled_from([0, -1, 1, 1000, 1001, 100_000, 100_001, 2**70, 1.5, True]),
)
bulk_keys = st.sampled_from(
    ["status", "func_name", "since", "until", "limit", "dry_run", "confirm"]
) | st.text(max_size=8)
bulk_bodies = st.one_of(
    st.dictionaries(bulk_keys, bulk_values, max_size=5).map(
        lambda body: json.dumps(body).encode("utf-8", "surrogatepass")
    ),
    json_values.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/tasks/bulk/retry", "/tasks/bulk/purge"]),
    body=bulk_bodies,
    bearer=st.sampled_from([True, True, False]),
)
@example(path="/tasks/bulk/purge", body=b'{"until": "0001-01-01T00:00:00-23:59"}', bearer=True)
@example(path="/tasks/bulk/retry", body=b'{"since": "9999-12-31T23:59:59-23:59"}', bearer=True)
@example(path="/tasks/bulk/retry", body=b'{"limit": 1e999}', bearer=True)
async def test_hostile_bulk_bodies_get_a_4xx_or_an_answer(target, path, body, bearer):
    headers = {"content-type": "application/json"}
    if bearer:
        headers["authorization"] = f"Bearer {TOKEN}"
    response = await target.client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (body, response.status_code, response.text)
    if not bearer:
        assert response.status_code == 401
    elif response.status_code == 200:
        assert isinstance(response.json()["matched"], int)
    ready = await target.client.get("/readyz")
    assert ready.status_code == 200, (body, ready.json())
