"""A TCP proxy the tests control, to cut one process off from a server and heal it again.

It runs its own event loop on a thread, so a test drives it with plain calls::

    with TcpProxy(("127.0.0.1", redis_port)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"   # give this to the process to cut off
        proxy.cut()      # a partition: nothing goes through any more
        proxy.heal()     # connections work again

``cut(hold=True)`` (the default) is a black hole, what a lost route or a dropped firewall rule
looks like: connections stay open, new ones are accepted, but no byte is forwarded either way,
so the client sees only its own timeouts. At :meth:`heal` those held connections are closed (a
connection that lived through a long partition is usually dead by then too) and new ones work.
``cut(hold=False)`` resets every connection at once and every new one as it arrives: a refused
route, which the client notices immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

#: Bytes read from one side before they are forwarded to the other.
CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` until :meth:`cut`, again after :meth:`heal`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        #: Connections accepted so far (each test can check its client really went through).
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._cut = False
        self._hold = True
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self, *, hold: bool = True) -> None:
        """Stop forwarding. With ``hold``, connections stay open and silent until :meth:`heal`;
        otherwise every connection is reset now and every new one as it arrives."""
        self._call(self._set_cut(True, hold))

    def heal(self) -> None:
        """Forward again; connections held during the cut are closed, new ones go through."""
        self._call(self._set_cut(False, self._hold))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- on the proxy's own loop -----------------------------------------------------------

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()

    async def _set_cut(self, cut: bool, hold: bool) -> None:
        self._cut, self._hold = cut, hold
        if not (cut and hold):
            # Cut without holding: reset everything now. Healing: what was held is dead.
            self._drop_all()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter):
        self.accepted += 1
        if self._cut and not self._hold:
            _reset(client)
            return
        self._writers.add(client)
        if self._cut:
            # Held: accepted by the kernel, then silence (the client's bytes are swallowed by
            # _pipe's reads of the other connections; this one has no upstream at all yet).
            await _drain(client_reader)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(client)
            self._writers.discard(client)
            return
        self._writers.add(upstream)
        await asyncio.gather(
            self._pipe(client_reader, upstream), self._pipe(upstream_reader, client)
        )
        for writer in (client, upstream):
            self._writers.discard(writer)
            _reset(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(CHUNK):
                if self._cut:
                    continue  # lost in the partition
                writer.write(data)
                await writer.drain()
        _reset(writer)


async def _drain(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while await reader.read(CHUNK):
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once, without flushing what is buffered (the peer sees a reset or EOF)."""
    writer.transport.abort()
