"""Read a server-sent event stream from an ASGI app in-process (imported as ``tests.sse``).

httpx's ASGITransport collects the whole response before returning it, so it cannot read an
endless stream; this drives the app directly: one GET, body chunks as they are sent, and a
client disconnect on exit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

#: Seconds the stream gets to answer or to end before the test fails.
DEFAULT_TIMEOUT = 5.0


@dataclass
class Frame:
    """One SSE frame: a named event with data, or a comment (heartbeat)."""

    event: str = "message"
    data: str = ""
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Frame:
        frame = cls()
        data: list[str] = []
        for line in text.split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                frame.comment = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                data.append(value)
            else:
                frame.fields[name] = value
        frame.data = "\n".join(data)
        return frame


class EventStream:
    """``async with EventStream(app, "/tasks/stream") as stream: await stream.next()``."""

    def __init__(self, app: Any, path: str, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.path = path
        self.headers = {"host": "test", **(headers or {})}
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.ended = False
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._started: asyncio.Future[None] | None = None
        self._disconnect = asyncio.Event()
        self._buffer = ""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        self._started = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(asyncio.shield(self._started), DEFAULT_TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Disconnect like a browser closing the tab; the app must let go within ``timeout``."""
        self._disconnect.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout)

    async def _run(self) -> None:
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
            "state": {},
        }
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            assert self._started is not None
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.response_headers = {
                    k.decode().lower(): v.decode() for k, v in message.get("headers", [])
                }
                self._started.set_result(None)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await self._chunks.put(message["body"])
                if not message.get("more_body", False):
                    await self._chunks.put(None)

        try:
            await self.app(scope, receive, send)
        finally:
            await self._chunks.put(None)
            if self._started is not None and not self._started.done():
                self._started.set_exception(AssertionError("the app sent no response"))

    async def next(self, timeout: float = DEFAULT_TIMEOUT) -> Frame | None:
        """The next frame, or ``None`` once the server ended the stream. Fails on timeout."""
        deadline = time.monotonic() + timeout
        while "\n\n" not in self._buffer:
            if self.ended:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout}s")
            try:
                chunk = await asyncio.wait_for(self._chunks.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no event within {timeout}s") from None
            if chunk is None:
                self.ended = True
            else:
                self._buffer += chunk.decode()
        text, self._buffer = self._buffer.split("\n\n", 1)
        return Frame.parse(text)

    async def until(self, predicate: Any, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Skip frames until one satisfies ``predicate``; fail if the stream ends or times out."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.001, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError("the stream ended first")
            if predicate(frame):
                return frame

    async def body(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Everything up to the end of the response (for short, non-stream answers)."""
        while not self.ended:
            chunk = await asyncio.wait_for(self._chunks.get(), timeout)
            if chunk is None:
                self.ended = True
            else:
                self._buffer += chunk.decode()
        return self._buffer
