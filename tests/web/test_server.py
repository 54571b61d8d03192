"""What taskflow reads of the running uvicorn server, checked against the installed uvicorn:
an upgrade that moves it fails here instead of leaving dashboard streams open at shutdown."""

from __future__ import annotations

import signal

import uvicorn

from taskflow.web.server import server_is_exiting, server_serving


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    return None


def test_a_real_uvicorn_server_is_seen_serving_then_exiting() -> None:
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off"))
    assert not server_serving() and not server_is_exiting()  # no server: nothing to read
    # uvicorn raises the signals it caught again once it leaves capture_signals(): here they
    # must reach a handler that ignores them, not end the test process.
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with server.capture_signals():  # what uvicorn does around serving
            assert server_serving()
            assert not server_is_exiting()
            server.handle_exit(signal.SIGTERM, None)  # the first SIGTERM
            assert server_is_exiting()
            assert not server_serving()
        assert not server_serving() and not server_is_exiting()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
