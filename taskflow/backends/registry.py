"""Map URL schemes to backend classes, importing a backend's module only when it is chosen."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from taskflow.backends.base import SnapshotBackend

#: Class name -> (module, extra that provides its dependencies, or None when always installed).
_CLASSES: dict[str, tuple[str, str | None]] = {
    "SqliteBackend": ("taskflow.backends.sqlite", None),
    "RedisBackend": ("taskflow.backends.redis", "redis"),
}

#: URL scheme -> class name.
_SCHEMES: dict[str, str] = {
    "sqlite": "SqliteBackend",
    "redis": "RedisBackend",
    "rediss": "RedisBackend",
    "unix": "RedisBackend",
}


def load_backend_class(name: str) -> Any:
    """Import and return a backend class, naming the extra to install when it is missing."""
    module_name, extra = _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or exc.name not in (extra, module_name):
            raise
        raise ImportError(
            f"{name} needs the '{extra}' extra: pip install 'taskflow-kit[{extra}]'"
        ) from exc
    return getattr(module, name)


def backend_from_url(url: str) -> SnapshotBackend:
    """Build the backend a URL names: ``sqlite:///path/to/file.db`` or ``redis://host:port/db``.

    Raises ``ValueError`` naming what is wrong with the URL.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"backend URL {url!r} has no scheme; use sqlite:///path/to/tasks.db "
            "or redis://host:6379/0"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(sorted(_SCHEMES))
        raise ValueError(f"backend URL {url!r} has unknown scheme {scheme!r}; known: {known}")
    cls = load_backend_class(_SCHEMES[scheme])
    backend: SnapshotBackend = cls.from_url(url)
    return backend
