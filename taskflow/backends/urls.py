"""Backend URLs: map schemes to backend classes, importing a backend's module only when it is
chosen, and show URLs in messages without their passwords."""

from __future__ import annotations

import importlib
import re
from typing import Any
from urllib.parse import urlsplit

from taskflow.backends.base import SnapshotBackend

#: Class name -> (module, the extra that provides its dependencies and the module that extra
#: installs; None when always installed).
_CLASSES: dict[str, tuple[str, tuple[str, str] | None]] = {
    "SqliteBackend": ("taskflow.backends.sqlite", None),
    "RedisBackend": ("taskflow.backends.redis", ("redis", "redis")),
    "PostgresBackend": ("taskflow.backends.postgres", ("postgres", "asyncpg")),
}

#: The password of a URL's user info, ``scheme://user:password@host`` (and ``user:password@host``
#: when the scheme was left out). It runs to the last ``@``: a password may hold ``@``, ``:`` and,
#: unescaped, even ``/``, so this masks too much rather than too little when the rest of the URL
#: has an ``@`` too.
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):.*@", re.DOTALL)
_PASSWORD_NO_SCHEME = re.compile(r"^(?P<head>[^:@/?#]*):.*@", re.DOTALL)
#: A query option whose name says it holds a secret (``password=``, ``sentinel_password=``...).
_SECRET_OPTION = re.compile(
    r"(?P<name>[?&;][^=&;#]*(?:pass|pwd|secret|token)[^=&;#]*)=[^&;#]*", re.IGNORECASE
)

#: URL scheme -> class name.
_SCHEMES: dict[str, str] = {
    "sqlite": "SqliteBackend",
    "redis": "RedisBackend",
    "rediss": "RedisBackend",
    "unix": "RedisBackend",
    "postgresql": "PostgresBackend",
    "postgres": "PostgresBackend",
}


def load_backend_class(name: str) -> Any:
    """Import and return a backend class, naming the extra to install when it is missing."""
    module_name, needs = _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if needs is None or exc.name not in (needs[1], module_name):
            raise
        extra = needs[0]
        raise ImportError(
            f"{name} needs the '{extra}' extra: pip install 'taskflow-kit[{extra}]'"
        ) from exc
    return getattr(module, name)


def backend_from_url(url: str) -> SnapshotBackend:
    """Build the backend a URL names: ``sqlite:///path/to/file.db``, ``redis://host:port/db`` or
    ``postgresql://user@host:5432/db``.

    Raises ``ValueError`` naming what is wrong with the URL.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"backend URL {mask_url(url)!r} has no scheme; use sqlite:///path/to/tasks.db "
            "or redis://host:6379/0"
        )
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ValueError(f"backend URL {mask_url(url)!r} cannot be parsed: {exc}") from None
    if scheme not in _SCHEMES:
        known = ", ".join(sorted(_SCHEMES))
        raise ValueError(
            f"backend URL {mask_url(url)!r} has unknown scheme {scheme!r}; known: {known}"
        )
    cls = load_backend_class(_SCHEMES[scheme])
    backend: SnapshotBackend = cls.from_url(url)
    return backend


def mask_url(url: object) -> str:
    """``url`` for messages and logs: the password in its user info and the values of
    password-like query options (``password``, ``*pass*``, ``pwd``, ``secret``, ``token``)
    replaced by ``***``.

    Works on text that is not a valid URL too (no scheme, a bad port, stray brackets) and never
    raises, so it can sit in any error message; anything but a string is shown as its ``repr``.
    """
    text = url if isinstance(url, str) else repr(url)
    password = _PASSWORD if "://" in text else _PASSWORD_NO_SCHEME
    text = password.sub(r"\g<head>:***@", text, count=1)
    return _SECRET_OPTION.sub(r"\g<name>=***", text)
