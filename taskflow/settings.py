"""``TASKFLOW_*`` environment variables -> configuration. Read only at the edges (apps, CLI)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The configuration contract every stack (compose, k8s, runner, load tests) agrees on.
DEFAULTS: dict[str, str] = {
    "TASKFLOW_BACKEND_URL": "sqlite:///./tasks.db",
    "TASKFLOW_SNAPSHOT_INTERVAL": "30",
    "TASKFLOW_INSTANCE_ID": "",  # empty: host-pid of each process
    "TASKFLOW_DISPLAY_FUNC_ARGS": "false",
    "TASKFLOW_ADMIN_TOKEN": "",  # empty: the dashboard and API are open (a warning says so)
    "TASKFLOW_SHUTDOWN_TIMEOUT": "20",
    # Comma-separated Fernet keys that encrypt stored task arguments (the first encrypts, all
    # decrypt: rotation); empty: arguments are stored as JSON (docs/persistence.md).
    "TASKFLOW_ARGS_KEYS": "",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    backend_url: str
    snapshot_interval: float
    instance_id: str | None
    display_func_args: bool
    admin_token: str | None
    shutdown_timeout: float
    args_keys: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name, DEFAULTS[name]).strip()

        return cls(
            backend_url=get("TASKFLOW_BACKEND_URL") or DEFAULTS["TASKFLOW_BACKEND_URL"],
            snapshot_interval=_seconds("TASKFLOW_SNAPSHOT_INTERVAL", get),
            instance_id=get("TASKFLOW_INSTANCE_ID") or None,
            display_func_args=_flag("TASKFLOW_DISPLAY_FUNC_ARGS", get),
            admin_token=get("TASKFLOW_ADMIN_TOKEN") or None,
            shutdown_timeout=_seconds("TASKFLOW_SHUTDOWN_TIMEOUT", get),
            args_keys=tuple(k.strip() for k in get("TASKFLOW_ARGS_KEYS").split(",") if k.strip()),
        )

    def manager_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~taskflow.TaskManager`."""
        return {
            "snapshot_backend": self.backend_url,
            "snapshot_interval": self.snapshot_interval,
            "instance_id": self.instance_id,
            "display_func_args": self.display_func_args,
            "shutdown_timeout": self.shutdown_timeout,
            "args_keys": list(self.args_keys) or None,
        }


def _seconds(name: str, get: Any) -> float:
    raw = get(name)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _flag(name: str, get: Any) -> bool:
    raw = get(name).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")
