"""How backends store a record as JSON text, and read it back without trusting what is stored.

Writing never fails because of a value: a record orjson refuses (a lone surrogate in an error
message, an integer beyond 64 bits) is stored as a copy with those values made safe (see
:mod:`taskflow.storable`). Reading never fails because of a row: one that cannot be decoded is
skipped and counted, so it never fails a listing or a startup.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from typing import Any

import orjson

from taskflow.backends.cipher import ArgumentCipher
from taskflow.models import (
    KEY_HOLDERS,
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    AuditEntry,
    TaskRecord,
)
from taskflow.storable import safe_text, storable

#: The status sets of :mod:`taskflow.models` as stored values, for the backends' SQL and Lua:
#: statuses that never change again (the upsert rules), live ones (claims), and those under
#: which an idempotency key is taken.
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in TERMINAL_STATUSES))
LIVE_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in LIVE_STATUSES))
KEY_HOLDER_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in KEY_HOLDERS))
#: Task ids remembered per codec so that each odd record is logged once, not at every read.
LOGGED_IDS = 1_000

logger = logging.getLogger("taskflow.backends.codec")


def encode_audit(entry: AuditEntry) -> str:
    """An audit entry as ASCII JSON: any text (a lone surrogate from a client's filter
    included) is escaped, so every backend stores it as it is."""
    return json.dumps(entry.to_dict(), ensure_ascii=True, separators=(",", ":"))


def decode_audit(text: str) -> AuditEntry | None:
    """The entry :func:`encode_audit` stored, or ``None`` (logged) for anything else."""
    try:
        data = json.loads(text)
        return AuditEntry.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        logger.warning("skipping an unreadable audit entry: %r", exc)
        return None


class UnreadableRecord(Exception):
    """A record is stored under this id but cannot be decoded (hand-edited, corrupt)."""

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"task {task_id} is stored, but its record cannot be read ({reason})")
        self.task_id = task_id
        self.reason = reason


def safe_record(record: TaskRecord) -> TaskRecord:
    """A copy of ``record`` that orjson encodes: every text valid UTF-8, every value JSON."""
    texts: dict[str, Any] = {
        name: safe_text(value)
        for name in (
            "task_id",
            "func_name",
            "error",
            "traceback",
            "instance_id",
            "retry_of",
            "idempotency_key",
            "sealed_args",
            "late_of",
            "schedule",
        )
        if isinstance(value := getattr(record, name), str)
    }
    args = storable(record.args) if record.args is not None else None
    kwargs = storable(record.kwargs) if record.kwargs is not None else None
    logs = storable(record.logs) if record.logs is not None else None
    progress = storable(record.progress) if record.progress is not None else None
    return dataclasses.replace(
        record, **texts, args=args, kwargs=kwargs, logs=logs, progress=progress
    )


class RecordCodec:
    """Encodes records for a backend and decodes what it reads; counts what needed care.

    ``cipher`` (optional) stores the arguments encrypted (see :mod:`taskflow.backends.cipher`).
    """

    def __init__(self, cipher: ArgumentCipher | None = None) -> None:
        self.cipher = cipher
        #: Records stored with values made safe since start.
        self.made_safe = 0
        #: Stored records skipped at reading because they could not be decoded.
        self.unreadable = 0
        self._logged: OrderedDict[str, None] = OrderedDict()

    def encode(self, record: TaskRecord) -> tuple[TaskRecord, bytes]:
        """The record to take column values from (``record`` itself, or a safe copy) and the
        JSON stored for it. orjson serialises the dataclass directly, about three times faster
        than building ``to_dict()`` and dumping it, which is most of a large flush's CPU time.
        """
        if self.cipher is not None and (record.args is not None or record.kwargs is not None):
            sealed = self.cipher.seal(storable(record.args), storable(record.kwargs))
            record = dataclasses.replace(record, args=None, kwargs=None, sealed_args=sealed)
        try:
            return record, orjson.dumps(record)
        except orjson.JSONEncodeError as exc:
            safe = safe_record(record)
            encoded = orjson.dumps(safe)  # a failure here is a bug: the flusher quarantines it
            self.made_safe += 1
            if self._first_time(record.task_id):
                logger.warning(
                    "task %s (%s) is stored with values made safe: %s",
                    safe.task_id,
                    safe.func_name,
                    exc,
                )
            return safe, encoded

    def decode(self, data: Any, task_id: str) -> TaskRecord | None:
        """The record stored as ``data`` under ``task_id``, or ``None`` (logged once, counted)
        when it cannot be decoded. Never raises: one bad row must not fail a whole listing."""
        try:
            return self.decode_or_raise(data, task_id)
        except UnreadableRecord as exc:
            self.unreadable += 1
            if self._first_time(task_id):
                logger.warning("skipping stored task %s: %s", safe_text(task_id), exc.reason)
            return None

    def decode_or_raise(self, data: Any, task_id: str) -> TaskRecord:
        """As :meth:`decode`, but raises :class:`UnreadableRecord` (for one-record lookups)."""
        try:
            fields = orjson.loads(data)
            if not isinstance(fields, dict):
                raise TypeError(f"expected a JSON object, got {type(fields).__name__}")
            record = TaskRecord.from_dict(fields)
        except Exception as exc:  # untrusted data: whatever it makes the parser raise
            reason = safe_text(f"malformed data ({type(exc).__name__}: {exc})")
            raise UnreadableRecord(safe_text(task_id), reason) from None
        if record.task_id != task_id:
            reason = f"its data names task {safe_text(record.task_id)}"
            raise UnreadableRecord(safe_text(task_id), reason)
        if record.sealed_args is not None and self.cipher is not None:
            opened = self.cipher.open(record.sealed_args)
            if opened is not None:
                record.args, record.kwargs = opened
                record.sealed_args = None
        return record

    def _first_time(self, task_id: str) -> bool:
        if task_id in self._logged:
            return False
        self._logged[task_id] = None
        if len(self._logged) > LOGGED_IDS:
            self._logged.popitem(last=False)
        return True
