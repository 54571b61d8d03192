"""Sessions across real processes on one backend: a logout on one instance ends the session on
every other, its open streams included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx

from taskflow.web.auth.revocation import CHECK_SECONDS
from tests.integration.history import wait_for

APP = "tests.integration.apps.secured:app"
TOKEN = "integration-session-token"


def first(lines: Iterator[str], wanted: Callable[[str], bool], within: float) -> str:
    """The first line that is ``wanted``; fails after ``within`` seconds (the stream's pings every
    0.2 s keep lines coming, so the clock is looked at often)."""
    deadline = time.monotonic() + within
    for line in lines:
        if wanted(line):
            return line
        assert time.monotonic() < deadline, f"no such line within {within}s"
    raise AssertionError("the stream ended first")


def test_a_logout_on_one_instance_ends_the_session_on_the_other(run_server, shared_backend):
    env = {**shared_backend.env, "TEST_ADMIN_TOKEN": TOKEN, "TEST_STREAM_HEARTBEAT": "0.2"}
    one = run_server(APP, env={**env, "TEST_INSTANCE_ID": "one"})
    two = run_server(APP, env={**env, "TEST_INSTANCE_ID": "two"})
    with httpx.Client(base_url=one.url, timeout=10) as browser:
        assert browser.post("/tasks/login", data={"token": TOKEN}).status_code == 303
        session = {"Cookie": f"taskflow_session={browser.cookies['taskflow_session']}"}
        # Signed with a key every instance derives from the token: the other accepts it.
        assert httpx.get(f"{two.url}/tasks", headers=session).status_code == 200
        with httpx.stream("GET", f"{two.url}/tasks/stream", headers=session, timeout=10) as live:
            assert live.status_code == 200
            lines = live.iter_lines()
            assert first(lines, lambda line: line.startswith("event:"), 5) == "event: hello"
            csrf = {"X-CSRF-Token": browser.cookies["taskflow_csrf"]}
            assert browser.post("/tasks/logout", headers=csrf).status_code == 204
            logged_out = time.monotonic()
            ended = first(lines, lambda line: "session ended" in line, CHECK_SECONDS + 2)
            assert ended == 'data: {"reason": "session ended"}'
            assert time.monotonic() - logged_out < CHECK_SECONDS + 2
            assert [line for line in lines if line] == []  # and the stream was closed
    wait_for(
        lambda: httpx.get(f"{two.url}/tasks", headers=session).status_code == 401,
        timeout=CHECK_SECONDS + 2,
        what="the other instance to refuse the ended session",
    )
    page = httpx.get(f"{two.url}/tasks/dashboard", headers=session)
    assert page.status_code == 303 and page.headers["location"] == "/tasks/login"
    for server in (one, two):
        assert "Traceback" not in server.log()
