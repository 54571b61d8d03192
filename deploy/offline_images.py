"""Everything the Compose stacks need on a machine that reaches no image registry, in one command.

    python3 -m deploy.offline_images --env-file .env    # make offline-images (docs/compose.md)

1. **A base image**, ``taskflow-kit-base:<suite>``: a minimal Debian of this machine's release,
   made with debootstrap from its own apt mirror and loaded with ``docker import``. It holds
   python3 (with venv), nginx, redis-server and PostgreSQL, so it stands in for all four images
   the stacks pull otherwise (``BASE_IMAGE``, ``NGINX_IMAGE``, ``REDIS_IMAGE``,
   ``POSTGRES_IMAGE``). Like the official images it replaces, it has ``/data`` owned by uid 999,
   the redis user of the official image, which the Compose file runs Redis as, and
   ``/var/lib/postgresql/data`` owned by the ``postgres`` user, which compose.postgres.yml runs
   PostgreSQL as (by name: its uid differs between the two). Made once; ``--rebuild`` makes it
   again.
2. **A wheelhouse**, ``deploy/wheels/``: every wheel that deploy/Dockerfile and
   deploy/loadtest.Dockerfile install (the package's dependencies with the ``EXTRAS`` below, and
   the build requirements of pyproject.toml), downloaded by pip **inside the base image**, so
   that environment markers are those of the image's own Python (a host whose Python is of
   another patch level would pick other wheels: redis needs async-timeout below 3.11.3).

Then ``docker compose build`` works offline: both Dockerfiles install from the wheelhouse alone.
The image settings for Compose (``BASE_IMAGE``, ``NGINX_IMAGE``, ``REDIS_IMAGE``) are printed on
stdout, and written into the ``--env-file`` given (its other lines are kept). Needs root
(debootstrap), a Docker engine, and PyPI and the Debian mirror reachable; the standard library
only, so it runs with the system's python3 before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The wheelhouse both Dockerfiles read by default (their WHEELHOUSE build argument).
WHEELHOUSE = ROOT / "deploy" / "wheels"
#: The base image's name; the tag is the Debian suite it was made from.
BASE_NAME = "taskflow-kit-base"
#: What the base holds besides Debian's minimal set: the Python the app runs on (venv makes its
#: pip), and the nginx, Redis and PostgreSQL the stacks run.
BASE_PACKAGES = ("python3", "python3-venv", "nginx", "redis-server", "postgresql")
#: The uid and gid the official Redis image runs as and owns /data with; deploy/compose.redis.yml
#: runs Redis as them.
REDIS_UID = 999
#: Where the official PostgreSQL image keeps its data (a volume's mount point), owned by its
#: ``postgres`` user: deploy/compose.postgres.yml mounts its named volume there.
POSTGRES_DATA = "var/lib/postgresql/data"
#: The extras the images install: deploy/Dockerfile the app's, deploy/loadtest.Dockerfile Locust.
EXTRAS = ("redis", "postgres", "server", "loadtest")
#: The host's settings pip in the container gets too: proxies and the index.
PASSED_ON = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
             "PIP_INDEX_URL")  # fmt: skip
#: Where the host's certificate authorities are: pip's own setting first, then Debian's bundle.
CA_BUNDLES = (
    os.environ.get("PIP_CERT"),
    os.environ.get("REQUESTS_CA_BUNDLE"),
    os.environ.get("SSL_CERT_FILE"),
    "/etc/ssl/certs/ca-certificates.crt",
)
#: Files pip needs to read the package's requirements.
PROJECT_FILES = ("pyproject.toml", "README.md", "taskflow")


def log(message: str) -> None:
    print(f"offline-images: {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, quiet: bool = False) -> str:
    """Run ``argv``, failing loudly; its output is returned when ``quiet``, shown otherwise."""
    result = subprocess.run(list(argv), text=True, capture_output=quiet)
    if result.returncode != 0:
        detail = f":\n{result.stdout}{result.stderr}" if quiet else ""
        raise SystemExit(f"offline-images: {shlex.join(argv)} failed{detail}")
    return result.stdout or ""


def apt_source() -> tuple[str, str | None]:
    """This machine's Debian suite and its apt mirror (None: debootstrap's default)."""
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    suite = release.get("VERSION_CODENAME", "").strip('"')
    if not suite:
        raise SystemExit("offline-images: not a Debian release with a codename (/etc/os-release)")
    mirror = None
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        uris = re.findall(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        mirror = next((u for u in uris if not u.rstrip("/").endswith("-security")), None)
    return suite, mirror


def image_exists(name: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", name], capture_output=True)
    return result.returncode == 0


def build_base(rebuild: bool = False) -> str:
    """The base image (made with debootstrap unless it exists); returns its name."""
    suite, mirror = apt_source()
    name = f"{BASE_NAME}:{suite}"
    if image_exists(name) and not rebuild:
        log(f"base image {name} exists (--rebuild makes it again)")
        return name
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.access(debootstrap, os.X_OK):
        raise SystemExit("offline-images: debootstrap is missing (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="taskflow-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {suite} with {', '.join(BASE_PACKAGES)} (a few minutes)")
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        run([*argv, suite, str(rootfs), *([mirror] if mirror else [])], quiet=True)
        # The package caches and lists are of no use in an image.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        (rootfs / "data").mkdir(exist_ok=True)
        os.chown(rootfs / "data", REDIS_UID, REDIS_UID)
        prepare_postgres(rootfs)
        # tar's own stream keeps device nodes and ownership as debootstrap made them.
        command = f"tar -C {shlex.quote(str(rootfs))} -c . | docker import - {shlex.quote(name)}"
        run(["bash", "-o", "pipefail", "-c", command], quiet=True)
    log(f"base image {name} made")
    return name


def prepare_postgres(rootfs: Path) -> None:
    """Leave PostgreSQL as the official image has it: no cluster (the package's postinst made
    one, ``15/main``, which nothing uses), an empty data folder owned by ``postgres``."""
    for cluster in (rootfs / "etc/postgresql", rootfs / "var/lib/postgresql"):
        for version in cluster.glob("[0-9]*"):
            shutil.rmtree(version)
    users = (rootfs / "etc/passwd").read_text().splitlines()
    entry = next((u.split(":") for u in users if u.startswith("postgres:")), None)
    if entry is None:
        raise SystemExit("offline-images: the postgresql package made no postgres user")
    data = rootfs / POSTGRES_DATA
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    os.chown(data, int(entry[2]), int(entry[3]))


def base_python(image: str) -> str:
    """The exact Python version of ``image`` (what its pip will choose wheels for)."""
    argv = ["docker", "run", "--rm", "--network=none", image, "python3", "-c"]
    code = "import platform; print(platform.python_version())"
    return run([*argv, code], quiet=True).strip()


def build_requirements() -> list[str]:
    """pyproject.toml's [build-system] requires: pip builds the package from them offline."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^\[build-system\]\s*\nrequires\s*=\s*\[(.*?)\]", text, re.M | re.S)
    if block is None:
        raise SystemExit("offline-images: pyproject.toml has no [build-system] requires")
    return re.findall(r'"([^"]+)"', block[1])


def host_network() -> list[str]:
    """``docker run`` options that let pip in a container reach the index as this host does:
    its network, its proxy and index settings, and its certificate authorities (a proxy that
    inspects TLS signs with a CA the minimal image does not have)."""
    options = ["--network=host"]
    for name in PASSED_ON:
        if os.environ.get(name):
            options.append(f"--env={name}={os.environ[name]}")
    bundle = next((b for b in CA_BUNDLES if b and Path(b).is_file()), None)
    if bundle is not None:
        options += [f"--volume={Path(bundle).resolve()}:/etc/taskflow-ca.pem:ro"]
        options += ["--env=PIP_CERT=/etc/taskflow-ca.pem"]
    return options


def fill_wheelhouse(image: str, wheelhouse: Path = WHEELHOUSE) -> int:
    """Download every wheel the images need into ``wheelhouse`` with ``image``'s own pip.

    Returns how many wheels the wheelhouse holds. Wheels already there are kept (pip skips
    what it has), so a second run only adds what changed.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    extras = ",".join(EXTRAS)
    wanted = [f"/tmp/src[{extras}]", *build_requirements()]
    copy = " ".join(f"/src/{shlex.quote(f)}" for f in PROJECT_FILES)
    script = (
        "set -e; mkdir /tmp/src; cp -r " + copy + " /tmp/src/; "
        "python3 -m venv /tmp/venv; "
        "/tmp/venv/bin/pip download --quiet --only-binary=:all: --dest /wheels "
        + " ".join(shlex.quote(w) for w in wanted)
    )
    log(f"wheelhouse for Python {base_python(image)} of {image}: {', '.join(wanted)}")
    # The host's user, so the wheels belong to whoever runs this.
    argv = ["docker", "run", "--rm", f"--user={os.getuid()}:{os.getgid()}"]
    argv += ["--env=HOME=/tmp", "--env=PIP_DISABLE_PIP_VERSION_CHECK=1", "--env=PIP_NO_CACHE_DIR=1"]
    argv += [f"--volume={ROOT}:/src:ro", f"--volume={wheelhouse.resolve()}:/wheels"]
    run([*argv, *host_network(), image, "sh", "-c", script])
    # The package itself is always built from the source by the Dockerfiles, never taken from
    # here: a wheel of it would only go stale.
    for own in wheelhouse.glob("taskflow_kit-*"):
        own.unlink()
    return len(list(wheelhouse.glob("*.whl")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m deploy.offline_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rebuild", action="store_true", help="make the base image again")
    parser.add_argument("--env-file", type=Path, help="set the image settings in this file")
    args = parser.parse_args(argv)
    if shutil.which("docker") is None:
        raise SystemExit("offline-images: the docker CLI is missing")
    base = build_base(rebuild=args.rebuild)
    count = fill_wheelhouse(base)
    log(f"{count} wheels in {WHEELHOUSE.relative_to(ROOT)}")
    # Settings for Compose: the one base serves as all four images.
    names = ("BASE_IMAGE", "NGINX_IMAGE", "REDIS_IMAGE", "POSTGRES_IMAGE")
    settings = dict.fromkeys(names, base)
    print("\n".join(f"{k}={v}" for k, v in settings.items()))
    if args.env_file is not None:
        set_env(args.env_file, settings)
        log(f"set {', '.join(settings)} in {args.env_file}")
    return 0


def set_env(path: Path, settings: dict[str, str]) -> None:
    """Set ``settings`` in a dotenv file: replaced where set, appended otherwise."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in settings]
    path.write_text("\n".join([*kept, *(f"{k}={v}" for k, v in settings.items())]) + "\n")


if __name__ == "__main__":
    sys.exit(main())
