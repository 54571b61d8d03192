"""The id an instance stores on its records and registers under, when none is given."""

from __future__ import annotations

import os
import socket

_default_id: str | None = None


def _forget_default_id() -> None:
    global _default_id
    _default_id = None


# Forks (gunicorn workers) are other processes: they work out their own id. Caching it saves a
# getpid() system call per enqueued task.
os.register_at_fork(after_in_child=_forget_default_id)


def default_instance_id() -> str:
    """``host-pid`` of the current process (cached; a forked child works out its own)."""
    global _default_id
    if _default_id is None:
        _default_id = f"{socket.gethostname()}-{os.getpid()}"
    return _default_id
