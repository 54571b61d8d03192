"""Reading a server-sent event stream (GET /tasks/stream, see taskflow/dashboard/stream.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def events(chunks: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """(event type, parsed data) per event as the chunks arrive; a comment (the heartbeat's
    ``: ping``) is ("ping", None)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            kind, data = "message", []
            for line in block.decode().splitlines():
                if line.startswith(":"):
                    kind = "ping"
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
            yield kind, json.loads("\n".join(data)) if data else None
