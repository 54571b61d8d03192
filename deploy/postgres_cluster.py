"""The local runner's PostgreSQL: the machine's own when it answers, or a cluster of its own.

``--postgres auto`` (the default) uses the server at the runner's URL (``--postgres-url``,
``POSTGRES_URL``; default the machine's, in a schema of the runner's own) when it
answers, and otherwise makes a cluster in the run folder with ``initdb`` and runs it with
``pg_ctl`` on a free loopback port; ``machine`` insists on the server at the URL, ``own`` always
makes a cluster (tests force it so).

PostgreSQL refuses to run as root: as root, ``initdb`` and ``pg_ctl`` run as the ``postgres``
user (Debian's package makes it), who must be able to reach the run folder. When it cannot (a run
folder inside a home or temporary folder only root may enter), the cluster lives in a folder of
its own under the system's temporary folder, linked from the run folder, and ``down`` removes
it (its log copied into the run folder): its history is not kept from one ``up`` to the next,
as it is otherwise.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: The server the runner uses unless told otherwise: the machine's (trust auth for local
#: connections, as Debian's package sets it up), in the ``postgres`` database, in a schema of
#: the runner's own, apart from the default ``taskflow`` schema of any other app.
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres?schema=taskflow_kit"
#: auto: the machine's when it answers, else its own; machine: only the URL's; own: always its own.
MODES = ("auto", "machine", "own")
#: The run folder's entry for the cluster (a folder, or a link to one elsewhere).
FOLDER = "postgres"
#: Seconds pg_ctl waits for the server to accept connections (crash recovery included).
START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """The cluster could not be made or started; the message says why."""


def url_from_env() -> str:
    return os.environ.get("POSTGRES_URL") or DEFAULT_URL  # the Makefile's variable, like RUN_DIR


def own_url(url: str, port: int) -> str:
    """The URL of the runner's own cluster on ``port``: its ``postgres`` database and user, with
    taskflow's options of ``url`` (the schema, the pool size; not its server settings, such as
    ``sslmode``, which the cluster may not support)."""
    ours = [(k, v) for k, v in parse_qsl(urlsplit(url).query) if k in ("schema", "pool_size")]
    address = f"postgres@127.0.0.1:{port}"
    return urlunsplit(("postgresql", address, "/postgres", urlencode(ours), ""))


def with_schema(url: str, schema: str) -> str:
    """``url`` with its ``schema`` option set to ``schema``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def answers(url: str, timeout: float = 3.0) -> bool:
    """Whether a PostgreSQL server accepts a connection at ``url`` and runs a query."""
    return asyncio.run(_answers(url, timeout))


async def _answers(url: str, timeout: float) -> bool:
    import asyncpg

    from taskflow.backends.postgres.backend import split_url

    dsn, _ = split_url(url)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return await conn.fetchval("SELECT 1", timeout=timeout) == 1
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    finally:
        await conn.close()


def drop_schema(url: str) -> None:
    """Drop the schema named by ``url`` with everything in it (the load tests' clean-up)."""
    asyncio.run(_drop_schema(url))


async def _drop_schema(url: str) -> None:
    import asyncpg

    from taskflow.backends.postgres.backend import split_url

    dsn, options = split_url(url)
    schema = options.get("schema", "taskflow")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: the newest of Debian's /usr/lib/postgresql/*/bin, or PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
        return Path(newest).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ClusterError(f"{what} failed: {result.stdout}{result.stderr}".strip())


def _folder(run_dir: Path) -> Path:
    """The cluster's folder, made (and given to the postgres user when root) if need be."""
    entry = run_dir / FOLDER
    if entry.exists():
        return entry
    if entry.is_symlink():  # its target went away (the temporary folder was cleaned)
        entry.unlink()
    if os.geteuid() != 0:
        entry.mkdir()
        return entry
    if subprocess.run(_as_postgres(["test", "-x", str(run_dir)])).returncode == 0:
        entry.mkdir()
        shutil.chown(entry, "postgres", "postgres")
        return entry
    outside = Path(tempfile.mkdtemp(prefix="taskflow-kit-postgres-"))
    shutil.chown(outside, "postgres", "postgres")
    entry.symlink_to(outside)
    return entry


def start(run_dir: Path, port: int) -> tuple[int, Path]:
    """Start the run folder's cluster on ``port`` (made with initdb the first time).

    Returns the postmaster's pid (pg_ctl makes it the leader of its own process group) and its
    log. Only TCP on 127.0.0.1, trust auth for the ``postgres`` user, no Unix socket (its path
    in a deep run folder could be longer than the 107 bytes a socket path may have).
    """
    binaries = bin_dir()
    if binaries is None:
        raise ClusterError(
            "no PostgreSQL answers and none is installed to start one "
            "(Debian: apt-get install postgresql)"
        )
    folder = _folder(run_dir).resolve()  # a link in a folder postgres cannot enter: its target
    data, log = folder / "data", folder / "postgres.log"
    if not (data / "PG_VERSION").exists():
        initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        _run([*initdb, "-E", "UTF8", "--no-instructions"], "initdb")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    command = [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log)]
    _run([*command, "-w", "-t", str(START_TIMEOUT), "start"], "pg_ctl start")
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ClusterError(f"pg_ctl started no server that wrote its pid: {exc}") from None
    return pid, log


def remove_if_temporary(run_dir: Path) -> None:
    """After ``down``: remove a cluster that lives outside the run folder (see the module), its
    log kept in the run folder."""
    entry = run_dir / FOLDER
    if entry.is_symlink():
        target = entry.resolve()
        if (target / "postgres.log").exists():
            shutil.copyfile(target / "postgres.log", run_dir / "postgres.log")
        shutil.rmtree(target, ignore_errors=True)
        entry.unlink()
