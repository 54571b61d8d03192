"""Real server processes on free loopback ports (cf. uvicorn's tests/utils.py::run_server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisProcess, free_port
from tests.integration.history import BackendUnderTest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """One uvicorn process serving an app from tests/integration/apps."""

    app: str
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Server:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    self.app,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "info",
                    *self.extra_args,
                ],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.app} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.app} did not answer within {timeout}s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def wait_clean_exit(self, timeout: float = 30.0) -> None:
        """Wait for the process to finish a graceful shutdown.

        uvicorn re-raises the signal it caught once shutdown is complete, so a clean exit after
        SIGTERM shows as -SIGTERM (or 0 on older versions); the log must show it completed.
        """
        code = self.wait(timeout)
        assert code in (0, -signal.SIGTERM), f"exit code {code}:\n{self.log()}"
        assert "Finished server process" in self.log(), self.log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``run_server("tests.integration.apps.basic:app", env={...})`` -> a started Server.

    Every server started through it is stopped (SIGTERM, then SIGKILL) when the test ends.
    """
    servers: list[Server] = []

    def start(app: str, env: dict[str, str] | None = None, **kwargs: object) -> Server:
        port = free_port()
        server = Server(app, port, tmp_path / f"server-{port}.log", env or {}, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may stop, kill, pause and restart: with
    ``appendonly`` (fsync at every write), so what it acknowledged survives a SIGKILL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary missing: cannot stop and restart a private Redis")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisProcess.start(binary, workdir, appendonly=True)
    yield server
    server.stop()


#: (url, prefix) of every Redis store the tests used, swept once more at the end of the session.
_redis_prefixes: list[tuple[str, str]] = []


@pytest.fixture(scope="session", autouse=True)
def _sweep_redis_prefixes() -> Iterator[None]:
    """Delete the tests' Redis keys again when the session ends: a server that a test stopped
    after its backend fixture had ended wrote its final flush under the deleted prefix."""
    yield
    for url, prefix in _redis_prefixes:
        delete_redis_prefix(url, prefix)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    """One shared store for several app processes: a WAL SQLite file, a Redis key prefix, or a
    PostgreSQL schema."""
    if request.param == "postgres":
        from taskflow.backends import PostgresBackend

        pg_url = request.getfixturevalue("postgres_url")
        schema = f"tftest_{uuid.uuid4().hex[:8]}"
        url = f"{pg_url}?schema={schema}"
        yield BackendUnderTest("postgres", {"TEST_BACKEND_URL": url}, lambda: PostgresBackend(url))
        drop_postgres_schema(pg_url, schema)
        return
    if request.param == "sqlite":
        from taskflow.backends import SqliteBackend

        db = tmp_path / "shared.db"
        yield BackendUnderTest(
            "sqlite", {"TEST_BACKEND_URL": f"sqlite:///{db}"}, lambda: SqliteBackend(db)
        )
        return
    from taskflow.backends import RedisBackend

    url = request.getfixturevalue("redis_url")
    prefix = f"tftest-{uuid.uuid4().hex[:8]}"
    _redis_prefixes.append((url, prefix))
    yield BackendUnderTest(
        "redis",
        {"TEST_BACKEND_URL": url, "TEST_REDIS_PREFIX": prefix},
        lambda: RedisBackend(url, prefix=prefix),
    )
    delete_redis_prefix(url, prefix)


def drop_postgres_schema(url: str, schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


def delete_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
