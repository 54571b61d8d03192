"""Detached processes for the local runner: start each in its own group, recognise it, stop it.

The runner exits after ``up``, so its children outlive it; what it writes to the state file (pid,
which is also the process group id, and the kernel's start time of that pid) is enough for a
later ``down`` or ``status`` to find them and to never signal an unrelated process that was
given a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass
class Proc:
    """One supervised process (the leader of its own process group)."""

    name: str  # "redis" or "postgres", "app-1", ..., "nginx"
    kind: str  # "redis" | "postgres" | "instance" | "nginx"
    pid: int
    port: int
    log: str
    started: str | None  # /proc start time of pid: tells our process from a reused pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proc:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def spawn(
    name: str,
    kind: str,
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str],
    cwd: Path,
) -> Proc:
    """Start ``argv`` in a new session (its own process group), output appended to ``log``."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # one group per component: stopping it reaches its workers
        )
    return Proc(name, kind, child.pid, port, str(log), _stat(child.pid)[1])


def adopt(name: str, kind: str, pid: int, port: int, log: Path) -> Proc:
    """A process that started itself (pg_ctl's postmaster, the leader of its own group)."""
    return Proc(name, kind, pid, port, str(log), _stat(pid)[1])


def _stat(pid: int) -> tuple[str, str | None, int | None]:
    """(state, start time, process group) from /proc; ("?", None, None) where there is no /proc."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return ("X", None, None)
    except OSError:
        return ("?", None, None)
    # The command name may contain spaces and parentheses: fields start after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return (fields[0], fields[19], int(fields[2]))


def _reap(pid: int) -> None:
    # A child of this very process that exited stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(proc: Proc) -> bool:
    """Whether ``proc`` (the same process that was started, not a reused pid) still runs."""
    _reap(proc.pid)
    state, started, _ = _stat(proc.pid)
    if state == "?":  # no /proc on this system: ask the kernel, without recognising reuse
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True
    if state in ("X", "Z"):
        return False
    return proc.started is None or started == proc.started


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (needs /proc; empty list without it)."""
    members = []
    for entry in PROC.glob("[0-9]*"):
        pid = int(entry.name)
        _reap(pid)
        state, _, group = _stat(pid)
        if group == pgid and state not in ("X", "Z"):
            members.append(pid)
    return members


def stop(proc: Proc, timeout: float, first: int = signal.SIGTERM) -> bool:
    """Stop ``proc`` and everything in its process group; True when nothing of it is left.

    ``first`` goes to the group leader only (gunicorn and nginx masters stop their own workers
    gracefully; a worker signalled twice would skip its drain). Whatever is left after
    ``timeout`` seconds, or a group whose leader already died, gets SIGKILL.
    """
    leader_alive = is_alive(proc)
    if not leader_alive and _stat(proc.pid)[0] not in ("X", "Z", "?"):
        return True  # the pid was reused by someone else: our group ended long ago
    if leader_alive:
        _signal(proc.pid, first, group=False)
        if _wait_gone(proc, timeout):
            return True
    _signal(proc.pid, signal.SIGKILL, group=True)
    return _wait_gone(proc, 5.0)


def kill_group(proc: Proc) -> None:
    """SIGKILL the whole group at once, the way a crash or the OOM killer would."""
    if is_alive(proc):
        _signal(proc.pid, signal.SIGKILL, group=True)


def _signal(pid: int, signum: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(proc) and not group_members(proc.pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- ports and probes ----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port``; closed connections in TIME_WAIT do not count,
    as nginx and gunicorn set SO_REUSEADDR too."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status code of ``GET url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def log_tail(path: str | Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
