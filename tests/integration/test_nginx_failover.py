"""The kit's nginx config, run by the real nginx in front of instances that misbehave on purpose.

* A POST is never sent to a second instance once the first may have received it (that could
  enqueue its tasks twice), unless it carries an Idempotency-Key: then it is, and succeeds.
* When every instance is marked down at once, nginx still tries them (the backup group,
  nginx/snippets/upstream.conf): the first request after one comes back succeeds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy import nginx_config
from tests.conftest import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


class Answering(BaseHTTPRequestHandler):
    """An instance that answers every request with 200 and its name."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"instance_id": "good"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_answering(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Closer:
    """An instance that dies mid-request: it reads each request whole, then closes the
    connection without a word, so nginx cannot know whether it acted on it."""

    def __init__(self, port: int) -> None:
        self.received = 0
        self.sock = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.received += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[object]:
    """Factory: nginx with the kit's config in front of ``servers``; returns its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(servers: list[int]) -> str:
        prefix = tmp_path / f"nginx-{len(procs)}"
        port = free_port()
        nginx_config.render(prefix, port=port, servers=[f"127.0.0.1:{s}" for s in servers])
        binary = nginx_config.find_nginx()
        assert binary is not None
        with (prefix / "nginx.log").open("wb") as log:  # the child keeps its own descriptor
            command = nginx_config.command(binary, prefix)
            procs.append(subprocess.Popen(command, stdout=log, stderr=log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}{nginx_config.LB_HEALTH_PATH}").status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError((prefix / "nginx.log").read_text())

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_a_post_an_instance_may_have_received_is_resent_only_with_an_idempotency_key(nginx):
    closer, good = free_port(), free_port()
    dying = Closer(closer)
    server = serve_answering(good)
    try:
        # Round robin: of two POSTs, one goes to the dying instance first.
        url = nginx([closer, good])
        with httpx.Client(base_url=url) as client:
            plain = [client.post("/demo/fast").status_code for _ in range(2)]
        assert dying.received == 1
        assert sorted(plain) == [200, 502], "never resent: it may have enqueued tasks already"

        url = nginx([closer, good])  # a fresh nginx: nobody marked down yet
        with httpx.Client(base_url=url) as client:
            keyed = [
                client.post("/demo/fast", headers={"Idempotency-Key": f"k{i}"}).status_code
                for i in range(2)
            ]
            gets = [client.get("/tasks").status_code for _ in range(2)]
        assert dying.received == 2, "the keyed POST reached the dying instance first"
        assert keyed == [200, 200], "resent to the next instance: a repeat is harmless"
        assert gets == [200, 200]
    finally:
        dying.close()
        server.shutdown()
        server.server_close()


def test_nginx_tries_the_instances_even_when_it_marked_every_one_down(nginx):
    first, second = free_port(), free_port()
    url = nginx([first, second])  # nobody listens yet: every instance is down
    with httpx.Client(base_url=url) as client:
        assert [client.get("/tasks").status_code for _ in range(2)] == [502, 502]
        # Both are now marked down for fail_timeout. One comes back: the very next request
        # must reach it, not get "no live upstreams".
        server = serve_answering(second)
        try:
            assert client.get("/tasks").status_code == 200
            assert client.post("/demo/fast").status_code == 200
        finally:
            server.shutdown()
            server.server_close()
