"""A private PostgreSQL cluster for the drills that kill or pause it (never the machine's own).

``initdb`` with trust auth on a free loopback port, run as the ``postgres`` user (PostgreSQL
refuses to run as root). Stopped, killed, paused and resumed on the test's word.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresProcess:
    """One private cluster: ``url`` names its ``postgres`` database."""

    bin_dir: Path
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tf-pg-")))
    #: Off for the drills (they test what the client sees, faster); on for the benchmarks.
    fsync: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @classmethod
    def create(cls, *, fsync: bool = False) -> PostgresProcess:
        binary = pg_bin()
        if binary is None:
            raise RuntimeError("no PostgreSQL installed (/usr/lib/postgresql/*/bin)")
        server = cls(binary, fsync=fsync)
        if os.geteuid() == 0:
            shutil.chown(server.workdir, "postgres")
        initdb = [str(binary / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres"]
        subprocess.run(_as_postgres(*initdb), check=True, capture_output=True)
        server.start()
        return server

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        options += "" if self.fsync else " -c fsync=off"
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options]
        command += ["-l", str(self.workdir / "log"), "-w", "start"]
        subprocess.run(_as_postgres(*command), check=True, capture_output=True)

    def kill(self) -> None:
        """As a crash: SIGKILL the postmaster and every backend (recovery on the next start)."""
        for pid in self._pids():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self._pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def pause(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def unpause(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good (teardown): resumed first if paused, then a fast shutdown."""
        self.unpause()
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(*command), capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _pids(self) -> list[int]:
        """The postmaster and its children."""
        pid_file = self.data / "postmaster.pid"
        try:
            master = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True
        ).stdout.split()
        pids = [master, *(int(child) for child in children)]
        return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
