"""The kit's nginx config laid out in a run folder, with that run's upstream list and address.

nginx.conf and snippets/ are copied verbatim from nginx/; only conf.d/ (which instances, which
address) is written here. nginx then runs with the run folder as its prefix, so its pid file
and temp files stay there and no root is needed.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path

NGINX_SOURCE = Path(__file__).resolve().parents[1] / "nginx"

#: Passive health checks, the same in every stack's conf.d/upstream.conf: after this many
#: failed attempts (see nginx/snippets/failover.conf) an instance sits out FAIL_TIMEOUT. One:
#: a refused connection or a timeout is seldom a fluke, and every request it costs is a retry
#: elsewhere. Five seconds: about how long a restarted instance takes to come back.
MAX_FAILS = 1
FAIL_TIMEOUT = "5s"
#: Each instance again as a backup without health checks, tried only when every primary sits
#: out (nginx/snippets/upstream.conf says why): nginx never gives up on all instances at once.
BACKUP = "backup max_fails=0"

#: Health path nginx answers itself (nginx/snippets/lb-health.conf).
LB_HEALTH_PATH = "/healthz"


def find_nginx() -> str | None:
    """The nginx binary: on PATH, or where Debian puts it (/usr/sbin is not on every PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def upstream_conf(servers: Sequence[str]) -> str:
    lines = [
        "# Written by deploy/runner.py: the instances of this run, on loopback.",
        *(f"server {s} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};" for s in servers),
        "# The same again, tried only when every one above sits out (snippets/upstream.conf).",
        *(f"server {s} {BACKUP};" for s in servers),
    ]
    return "\n".join(lines) + "\n"


def listen_conf(port: int) -> str:
    return f"# Written by deploy/runner.py.\nlisten 127.0.0.1:{port};\n"


def render(prefix: Path, *, port: int, servers: Sequence[str]) -> Path:
    """Lay out ``prefix`` for ``nginx -p prefix``; returns the main config's path."""
    prefix.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NGINX_SOURCE / "nginx.conf", prefix / "nginx.conf")
    shutil.copytree(NGINX_SOURCE / "snippets", prefix / "snippets", dirs_exist_ok=True)
    (prefix / "conf.d").mkdir(exist_ok=True)
    write_upstreams(prefix, servers)
    (prefix / "conf.d" / "listen.conf").write_text(listen_conf(port))
    return prefix / "nginx.conf"


def write_upstreams(prefix: Path, servers: Sequence[str]) -> None:
    """Replace the instance list of a rendered ``prefix`` (atomically: a reload that reads it
    meanwhile sees the old list or the new one, never half of one)."""
    target = prefix / "conf.d" / "upstream.conf"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(upstream_conf(servers))
    tmp.replace(target)


def command(binary: str, prefix: Path, *, test: bool = False) -> list[str]:
    """The nginx command line for a rendered ``prefix`` (``test``: ``nginx -t``)."""
    directives = "daemon off;"  # in the foreground, so the runner's process group holds it
    if os.geteuid() == 0:
        # As root nginx would switch its workers to `nobody`, who cannot reach a private run
        # folder (pytest's tmp dirs are 0700); run them as the invoking user instead, as they
        # run anyway when nginx is started without root.
        directives += f" user {pwd.getpwuid(os.geteuid()).pw_name};"
    argv = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    return [*argv, "-g", directives, *(["-t"] if test else [])]
