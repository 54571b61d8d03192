"""Any value made storable as JSON text, so one odd value can never stop a write.

orjson, which encodes every record, refuses what the standard ``json`` module accepts: strings
with lone surrogates (``os.fsdecode`` of a non-UTF-8 file name gives one), integers beyond 64
bits, dict keys that are not strings, and nesting deeper than 254 levels. :func:`storable`
turns such values into ones it accepts, keeping as much of them as can be read: surrogates are
escaped (``\\udcff``), large integers become their decimal text, other objects their ``repr``.
"""

from __future__ import annotations

from typing import Any

#: Longest ``repr`` kept for a value that is not JSON.
MAX_REPR_CHARS = 200
#: Deepest nesting kept; anything below is replaced by a marker (orjson stops at 254).
MAX_DEPTH = 64
#: The integers orjson encodes (64 bits, signed or unsigned).
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: Longest decimal text kept for an integer beyond 64 bits.
MAX_INT_DIGITS = 100


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates escaped as ``\\udcff``, the rest unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_repr(value: Any) -> str:
    """A bounded, valid-UTF-8 ``repr`` that never raises (a failing ``__repr__`` included)."""
    try:
        text = repr(value)
    except Exception as exc:  # an object whose __repr__ fails is still shown as something
        text = f"<{type(value).__name__} object (repr failed: {type(exc).__name__})>"
    return safe_text(truncated(text, MAX_REPR_CHARS))


def _big_int(value: int) -> str:
    if value.bit_length() > 3 * MAX_INT_DIGITS:  # str() of it could be slow, or refused
        return f"<int of {value.bit_length()} bits>"
    return truncated(str(value), MAX_INT_DIGITS)


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` with everything orjson refuses replaced; JSON values come back as they are.

    NaN and infinities stay floats (orjson writes them as ``null``).
    """
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if INT_MIN <= value <= INT_MAX else _big_int(value)
    if isinstance(value, str):
        return safe_text(value)
    if depth >= MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, (list, tuple)):
        return [storable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_key(key): storable(item, depth + 1) for key, item in value.items()}
    return safe_repr(value)


def _key(key: Any) -> str:
    return safe_text(key) if isinstance(key, str) else safe_repr(key)
