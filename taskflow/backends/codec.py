"""How backends store a record as text, and read it back without trusting what is stored."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from taskflow.models import TERMINAL_STATUSES, TaskRecord

#: Status values that never change again, as stored (the upsert rules of every backend use them).
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in TERMINAL_STATUSES))


def encode_record(record: TaskRecord) -> str:
    """The JSON text stored for ``record``: its fields, times in ISO 8601 with offset.

    orjson serialises the dataclass directly, about three times faster than building
    ``to_dict()`` and dumping it, which is most of a large flush's CPU time.
    """
    return orjson.dumps(record).decode()


def encode_record_bytes(record: TaskRecord) -> bytes:
    """:func:`encode_record` as UTF-8 bytes, for clients that send bytes as they are."""
    return orjson.dumps(record)


def decode_record(text: Any, task_id: str, logger: logging.Logger) -> TaskRecord | None:
    """The record stored as ``text`` under ``task_id``, or ``None`` (with a warning) if malformed.

    One bad row or hash (hand-edited, written by a buggy version) must not make a whole
    listing fail, so this never raises.
    """
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        record = TaskRecord.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        logger.warning(
            "skipping stored task %s: malformed data (%s: %s)", task_id, type(exc).__name__, exc
        )
        return None
    if record.task_id != task_id:
        logger.warning("skipping stored task %s: its data names task %s", task_id, record.task_id)
        return None
    return record
