"""A rolling upgrade of the Compose stack's app replicas: one at a time, no request failed.

    docker compose build && python3 -m deploy.compose_upgrade     # make compose-upgrade

`docker compose up` would recreate every replica at once, leaving nginx no one to send requests
to (docs/compose.md, "Upgrades"). This replaces them one after the other, each in four steps:

1. **start** one more replica (the current image and settings) beside the others;
2. **wait** until it is ready: its ``/readyz`` answers 200 (backend reached, not draining);
3. **tell nginx**: its upstream list gets the new replica and loses the old one, and the script
   waits until nginx sends the old one nothing new (``nginx/entrypoint.sh drain``: a graceful
   reload, whose old workers close their idle connections to it at once);
4. **drain** the old one: ``docker stop`` (SIGTERM: it finishes its requests and running tasks
   and flushes, within its stop_grace_period), then remove it.

Capacity never drops, and no request reaches a replica that is closing its connections. Run it
where you run ``docker compose`` (the same folder, ``.env`` and ``COMPOSE_FILE``), after
``docker compose build``. The standard library only.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

#: Where nginx/ is mounted in the nginx container (deploy/compose.yml).
NGINX_ENTRYPOINT = "/etc/taskflow-nginx/entrypoint.sh"
#: Seconds a new replica gets to be ready (the Compose healthcheck's start_period, and more).
READY_TIMEOUT = 120.0


class UpgradeError(RuntimeError):
    """A step failed; the message says which. Replicas not yet replaced keep serving."""


def log(message: str) -> None:
    print(f"compose-upgrade: {message}", flush=True)


class ComposeProject:
    """The running Compose project, through its CLI and Docker's."""

    def __init__(self, compose: Sequence[str], service: str, nginx: str) -> None:
        self.compose_cli, self.service, self.nginx_service = list(compose), service, nginx

    def compose(self, *args: str) -> str:
        return run([*self.compose_cli, *args])

    def containers(self, service: str) -> list[str]:
        """Ids of the service's running containers, oldest name first."""
        ids = self.compose("ps", "--quiet", service).split()
        names = {c: docker("inspect", "--format", "{{.Name}}", c) for c in ids}
        return sorted(ids, key=lambda c: (len(names[c]), names[c]))

    def start_one_more(self, count: int) -> str:
        """Start one replica beside the ``count`` running ones; returns its id."""
        before = set(self.containers(self.service))
        self.compose(
            "up", "--detach", "--no-deps", "--no-recreate", "--no-build",
            "--scale", f"{self.service}={count + 1}", self.service,
        )  # fmt: skip
        added = [c for c in self.containers(self.service) if c not in before]
        if len(added) != 1:
            raise UpgradeError(f"expected one new replica, found {len(added)}")
        return added[0]

    def wait_ready(self, container: str) -> float:
        started = time.monotonic()
        check = ["exec", container, "python", "-m", "deploy.healthcheck", "/readyz"]
        while subprocess.run(["docker", *check], capture_output=True).returncode != 0:
            state = docker("inspect", "--format", "{{.State.Status}}", container)
            if state != "running" or time.monotonic() - started > READY_TIMEOUT:
                tail = run(["docker", "logs", "--tail", "30", container], stderr=True)
                what = f"new replica {short(container)} is not ready ({state})"
                raise UpgradeError(f"{what}:\n{tail}")
            time.sleep(0.5)
        return time.monotonic() - started

    def nginx(self, *args: str) -> str:
        (container,) = self.containers(self.nginx_service)
        return docker("exec", container, "sh", NGINX_ENTRYPOINT, *args)

    def hand_over(self, old: str, new: str) -> None:
        """nginx sends to ``new`` and no longer to ``old``, and has let go of ``old``."""
        old_addresses, new_addresses = addresses(old), addresses(new)
        self.nginx("drain", *old_addresses)
        deadline = time.monotonic() + 10
        # Docker's DNS knows the new replica as soon as it runs; the drain's reload wrote it.
        while not all(f"server {a}:" in self.nginx("show") for a in new_addresses):
            if time.monotonic() > deadline:
                raise UpgradeError(f"nginx does not list the new replica {new_addresses}")
            time.sleep(0.5)

    def retire(self, old: str) -> None:
        """Stop (SIGTERM: drain within its stop_grace_period), remove, and forget its address."""
        old_addresses = addresses(old)
        docker("stop", old)
        code = docker("inspect", "--format", "{{.State.ExitCode}}", old)
        docker("rm", old)
        # Docker may give the address to a later container: it must not stay left out.
        self.nginx("undrain", *old_addresses)
        if code != "0":
            log(f"warning: replica {short(old)} exited with {code} (see its logs above)")


def run(argv: Sequence[str], stderr: bool = False) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise UpgradeError(f"{shlex.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return (result.stdout + (result.stderr if stderr else "")).strip()


def docker(*args: str) -> str:
    return run(["docker", *args])


def addresses(container: str) -> list[str]:
    each = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    found = docker("inspect", "--format", each, container).split()
    if not found:
        raise UpgradeError(f"container {short(container)} has no address")
    return found


def short(container: str) -> str:
    return container[:12]


def upgrade(stack: ComposeProject) -> int:
    old = stack.containers(stack.service)
    if not old:
        raise UpgradeError(f"no running {stack.service} replica: `docker compose up` first")
    if len(stack.containers(stack.nginx_service)) != 1:
        raise UpgradeError(f"the {stack.nginx_service} service is not running")
    log(f"replacing {len(old)} {stack.service} replicas one at a time")
    for number, container in enumerate(old, 1):
        started = time.monotonic()
        new = stack.start_one_more(len(old))
        try:
            ready = stack.wait_ready(new)
        except UpgradeError:
            docker("rm", "--force", new)  # the old replicas serve on, untouched
            raise
        try:
            stack.hand_over(container, new)
        except UpgradeError:
            stack.nginx("undrain", *addresses(container))  # nginx sends to it again
            raise
        stack.retire(container)
        took = time.monotonic() - started
        log(
            f"{number}/{len(old)}: {short(container)} -> {short(new)} "
            f"(ready after {ready:.1f}s, old one drained; {took:.1f}s)"
        )
    log(f"done: {len(stack.containers(stack.service))} replicas, all new")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m deploy.compose_upgrade",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--compose", default="docker compose", help="the Compose command (default: %(default)s)"
    )
    parser.add_argument("--service", default="app", help="the replicated service")
    parser.add_argument("--nginx", default="nginx", help="the load balancer's service")
    args = parser.parse_args(argv)
    try:
        return upgrade(ComposeProject(shlex.split(args.compose), args.service, args.nginx))
    except UpgradeError as exc:
        print(f"compose-upgrade: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
