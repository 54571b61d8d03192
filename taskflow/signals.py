"""The second stage of the shutdown protocol: a second SIGTERM or SIGINT during the drain
stops waiting for running tasks.

The server (uvicorn, gunicorn's worker) owns the signal handlers and has already acted on the
first signal by the time the drain runs. During the drain we chain a handler in front of its
own (restored afterwards), as uvicorn itself does in ``capture_signals``, so the server still
sees every signal.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def second_signal_sets(event: asyncio.Event) -> Iterator[None]:
    """While inside, SIGTERM or SIGINT set ``event`` (then reach the previous handler too).

    Does nothing outside the main thread, where Python cannot install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(event.set)
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)

    for signum in _SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for restored, old in previous.items():
            signal.signal(restored, _restorable(old))


def _restorable(old: Any) -> Callable[..., Any] | int:
    # signal.signal() returns None for handlers not installed from Python; restore the default.
    return signal.SIG_DFL if old is None else old
