"""A container health check without curl: ``python -m deploy.healthcheck [/healthz|/readyz]``.

Exits 0 when the instance in this container answers the path (default ``/healthz``) with 200,
1 otherwise. It asks the address gunicorn listens on (``BIND``, else ``PORT``, else 8000: the
same reading as deploy/gunicorn.conf.py), always over loopback.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8000
TIMEOUT = 3.0


def port() -> int:
    bind = os.environ.get("BIND") or ""
    if bind.rpartition(":")[2].isdigit():
        return int(bind.rpartition(":")[2])
    return int(os.environ.get("PORT") or DEFAULT_PORT)


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    url = f"http://127.0.0.1:{port()}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (503 from /readyz) included
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
