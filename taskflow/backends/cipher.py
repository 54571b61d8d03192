"""Encryption at rest of the task arguments a backend stores (``cryptography``'s Fernet).

Arguments are stored so that any instance can run a task again (retry, requeue). With keys set
(``TaskManager(args_keys=[...])``, the reference app's ``TASKFLOW_ARGS_KEYS``), a record's
arguments are stored as one Fernet token (AES-128-CBC with HMAC-SHA256, authenticated)
instead of JSON; everything else of the record stays readable, so listings and filters work
unchanged. Keys rotate as with :class:`cryptography.fernet.MultiFernet`: the first key encrypts,
every key decrypts. A record whose token no key here can open keeps it, unopened, and cannot
be rerun here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

MISSING_EXTRA = (
    "argument encryption needs the 'encryption' extra: pip install 'taskflow-kit[encryption]'"
)


class ArgumentCipher:
    """Seals and opens a record's arguments with one or more Fernet keys (first one seals)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ModuleNotFoundError as exc:  # pragma: no cover - the dev extra installs it
            raise ImportError(MISSING_EXTRA) from exc
        if not keys:
            raise ValueError("give at least one argument key (Fernet.generate_key())")
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # Never echo the key itself: it is a secret.
                raise ValueError(
                    f"argument key {number} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes, as Fernet.generate_key() makes)"
                ) from None
        self._fernet = MultiFernet(fernets)

    def seal(self, args: list[Any] | None, kwargs: dict[str, Any] | None) -> str:
        """The token that stores ``args`` and ``kwargs``."""
        return self._fernet.encrypt(orjson.dumps([args, kwargs])).decode("ascii")

    def open(self, token: str) -> tuple[list[Any] | None, dict[str, Any] | None] | None:
        """``(args, kwargs)`` from a token, or ``None`` when no key opens it (or it is junk)."""
        from cryptography.fernet import InvalidToken

        try:
            args, kwargs = orjson.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError, TypeError, UnicodeEncodeError):
            return None
        if not (args is None or isinstance(args, list)):
            return None
        if not (kwargs is None or isinstance(kwargs, dict)):
            return None
        return args, kwargs
