"""Shared fixtures: a fresh manager and app per test, and an ASGI client that runs the lifespan."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager

TESTS = Path(__file__).resolve().parent
#: Folders whose tests start real server processes: marked ``integration`` (and the browser's
#: ``browser`` too), so that ``pytest -m "not integration"`` starts none. A ``pytestmark`` in a
#: conftest.py has no effect on the tests beside it; this hook is how a folder marks them.
MARKED_FOLDERS = {
    "integration": ("integration",),
    "browser": ("integration", "browser"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        for marker in MARKED_FOLDERS.get(folder, ()):
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture
def manager() -> TaskManager:
    return TaskManager()


@pytest.fixture
def make_client() -> Callable[[FastAPI], AsyncIterator[httpx.AsyncClient]]:
    """Factory: an httpx client over ASGI with the app's lifespan running around it."""

    async def factory(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return factory  # type: ignore[return-value]


@pytest.fixture
async def app_client(manager: TaskManager) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with TaskAdmin mounted and its lifespan running."""
    app = FastAPI()
    TaskAdmin(app, manager)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


# -- Redis ---------------------------------------------------------------------------------------

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reachable Redis for the tests.

    ``TASKFLOW_TEST_REDIS_URL`` (default db 15 on 127.0.0.1:6379) when it answers; otherwise a
    private ``redis-server`` started on a free port for this session; skip only when neither is
    possible.
    """
    url = os.environ.get("TASKFLOW_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if _redis_answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"Redis not reachable at {url} and no redis-server binary to start one")
    server = RedisProcess.start(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"{server.url}/15"
    finally:
        server.stop()


@dataclass
class RedisProcess:
    """A private redis-server on a free loopback port (used for tests that stop Redis)."""

    binary: str
    port: int
    workdir: Path
    appendonly: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, binary: str, workdir: Path, port: int | None = None, *, appendonly: bool = False
    ) -> RedisProcess:
        """``appendonly`` keeps data across a stop and restart (AOF, fsync on every write)."""
        server = cls(binary, port or free_port(), workdir, appendonly)
        server.resume()
        return server

    def resume(self) -> None:
        """(Re)start the server on the same port and wait until it answers."""
        persistence = ["--appendonly", "no"]
        if self.appendonly:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--dir", str(self.workdir), *persistence]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _redis_answers(self.url):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server never handles SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (what survives is what the AOF has)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def unpause(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL for the tests: ``TASKFLOW_TEST_POSTGRES_URL`` (default the
    ``test`` database on 127.0.0.1:5432); skip, saying so, only when none answers (``.ci/run``
    starts one). Each test works in a schema of its own."""
    import asyncio

    url = os.environ.get("TASKFLOW_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)

    async def answers() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    if not asyncio.run(answers()):
        pytest.skip(f"PostgreSQL not reachable at {url}")
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
