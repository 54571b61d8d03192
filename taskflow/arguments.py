"""What a record keeps of its task's arguments.

* **Exactly**, when every value is plain JSON of the exact built-in types (``None``, ``bool``,
  64-bit ``int``, finite ``float``, valid-UTF-8 ``str``, ``list``, ``dict`` with ``str`` keys)
  and the whole set encodes to at most ``max_bytes``: they come back from the backend equal
  *and of the same types*, so any instance can run the task again with them (the record is
  ``rerunnable``). A tuple, a ``Decimal``, a ``datetime``, an ``IntEnum`` would come back as
  something else, so they are not exact.
* Otherwise, with ``display_func_args``, a **display copy**: values that are not JSON become a
  truncated ``repr``; the record is not rerunnable.
* Otherwise nothing.

Where exact arguments are stored, the backend holds them (encrypted when an argument key is
set; see :mod:`taskflow.backends.cipher`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from taskflow.storable import INT_MAX, INT_MIN, MAX_DEPTH, storable

#: Longest JSON text of a display copy; a larger one is replaced by a marker.
MAX_DISPLAY_CHARS = 8_192
#: Default of ``TaskManager(max_stored_args_bytes=...)``: the largest exact argument set stored.
DEFAULT_MAX_STORED_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class KeptArguments:
    """The arguments a record keeps, whether they are exact, and their encoded size."""

    args: list[Any] | None
    kwargs: dict[str, Any] | None
    exact: bool
    size: int


NOTHING = KeptArguments(None, None, False, 0)
#: Bytes of ``[[],{}]``, the encoding of no arguments at all.
EMPTY_SIZE = 7


def keep_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], *, max_bytes: int, display: bool
) -> KeptArguments:
    """What to keep of ``args`` and ``kwargs`` (see the module docstring)."""
    if max_bytes > 0:
        if not args and not kwargs:  # the commonest call costs nothing to check
            return KeptArguments([], {}, True, EMPTY_SIZE)
        if _plain_list(args, 0) and _plain_dict(kwargs, 0):
            encoded = orjson.dumps([args, kwargs])
            if len(encoded) <= max_bytes:
                return KeptArguments(list(args), dict(kwargs), True, len(encoded))
    if not display:
        return NOTHING
    shown_args = [storable(a) for a in args]
    shown_kwargs = {str(storable(k)): storable(v) for k, v in kwargs.items()}
    encoded = orjson.dumps([shown_args, shown_kwargs])
    if len(encoded) > MAX_DISPLAY_CHARS:
        return KeptArguments(
            [f"<arguments truncated: {len(encoded)} characters>"], {}, False, MAX_DISPLAY_CHARS
        )
    return KeptArguments(shown_args, shown_kwargs, False, len(encoded))


def _plain(value: Any, depth: int) -> bool:
    kind = type(value)
    if value is None or kind is bool or (kind is str and _utf8(value)):
        return True
    if kind is int:
        return bool(INT_MIN <= value <= INT_MAX)
    if kind is float:
        return bool(value == value and value not in (float("inf"), float("-inf")))
    if depth >= MAX_DEPTH:
        return False
    if kind is list:
        return _plain_list(value, depth + 1)
    if kind is dict:
        return _plain_dict(value, depth + 1)
    return False


def _plain_list(values: list[Any] | tuple[Any, ...], depth: int) -> bool:
    for item in values:  # noqa: SIM110 - a loop: all() over a generator costs twice as much
        if not _plain(item, depth):
            return False
    return True


def _plain_dict(value: dict[Any, Any], depth: int) -> bool:
    for key, item in value.items():
        if type(key) is not str or not _utf8(key) or not _plain(item, depth):
            return False
    return True


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
