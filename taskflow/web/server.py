"""What taskflow reads of the running ASGI server: whether uvicorn has begun to shut down.

uvicorn offers no public hook for it. It installs its bound method ``Server.handle_exit`` as the
SIGTERM handler while it serves (uvicorn/server.py, ``capture_signals``) and sets the server's
``should_exit`` on the first signal. This module is the one place that reads that state;
tests/web/test_server.py checks it against the installed uvicorn, so an upgrade that changes it
fails there, loudly, instead of leaving dashboard streams open through a shutdown.
"""

from __future__ import annotations

import signal
from typing import Any


def _serving_server() -> Any:
    """uvicorn's ``Server`` while it serves (its SIGTERM handler is bound to it), else None."""
    return getattr(signal.getsignal(signal.SIGTERM), "__self__", None)


def server_serving() -> bool:
    """True while uvicorn serves and has not begun to shut down."""
    server = _serving_server()
    return getattr(server, "should_exit", None) is False


def server_is_exiting() -> bool:
    """True once uvicorn (also under gunicorn's UvicornWorker) has begun a graceful shutdown.

    uvicorn installs its bound method ``Server.handle_exit`` as the SIGTERM handler
    (uvicorn/server.py, ``capture_signals``) and sets ``should_exit`` on the first signal, but
    then waits for open connections to close before the lifespan shutdown runs: streams must end
    by themselves or they hold the shutdown up. sse-starlette reaches the same flag by patching
    ``Server.handle_exit``; reading the installed handler needs no patch.

    A worker recycled by ``--limit-max-requests`` (gunicorn's ``max_requests``) leaves without
    that flag: uvicorn's ``on_tick`` only compares its request count with the limit. The same
    comparison here ends the streams of such a worker too.
    """
    server = _serving_server()
    if server is None:
        return False
    if getattr(server, "should_exit", False) is True:
        return True
    limit = getattr(server, "limit_max_requests", None)
    state = getattr(server, "server_state", None)
    requests = getattr(state, "total_requests", None)
    return isinstance(limit, int) and isinstance(requests, int) and requests >= limit
