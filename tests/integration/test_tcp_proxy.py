"""The partition drill's TCP proxy cuts and heals for real (a proxy that kept forwarding during
a cut would let the drill pass without any partition)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.integration.tcp_proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with TcpProxy(server.server_address) as proxy:  # type: ignore[arg-type]
        yield proxy
    server.shutdown()
    server.server_close()


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)


def echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def closed(sock: socket.socket) -> bool:
    """The connection was reset or ended (not merely silent)."""
    try:
        return echo(sock) == b""
    except TimeoutError:
        return False
    except OSError:  # reset, broken pipe
        return True


def test_forwards_until_cut_holds_silently_and_heals(echo_proxy):
    before = connect(echo_proxy)
    assert echo(before) == b"ping"
    echo_proxy.cut()
    with pytest.raises(TimeoutError):
        echo(before)  # held: open, but nothing comes back
    during = connect(echo_proxy)  # accepted, as by a host that drops the packets
    with pytest.raises(TimeoutError):
        echo(during)
    assert not closed(before) and not closed(during)
    echo_proxy.heal()
    for held in (before, during):  # closed at the heal
        assert closed(held)
        held.close()
    with connect(echo_proxy) as after:
        assert echo(after) == b"ping"


def test_cut_without_holding_resets_connections(echo_proxy):
    before = connect(echo_proxy)
    assert echo(before) == b"ping"
    echo_proxy.cut(hold=False)
    assert closed(before)
    before.close()
    with connect(echo_proxy) as during:
        assert closed(during)
    echo_proxy.heal()
    with connect(echo_proxy) as after:
        assert echo(after) == b"ping"
