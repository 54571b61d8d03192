"""The SQLite backend's audit trail (schema version 4): one row per admin action, trimmed by age
and count at each append. Each function is one step run inside a ``BEGIN IMMEDIATE``
transaction (or a read)."""

from __future__ import annotations

import aiosqlite

from taskflow.backends.base import AUDIT_KEEP_ENTRIES, AUDIT_KEEP_SECONDS
from taskflow.backends.codec import decode_audit, encode_audit
from taskflow.models import AuditEntry

APPEND = "INSERT OR IGNORE INTO audit (entry_id, at_ts, data) VALUES (?, ?, ?)"
# Everything at or past the (keep+1)-th newest entry, walked on the primary key.
TRIM_BEYOND = """
    DELETE FROM audit WHERE entry_id <= (
        SELECT entry_id FROM audit ORDER BY entry_id DESC LIMIT 1 OFFSET ?)
"""


async def append(conn: aiosqlite.Connection, entry: AuditEntry) -> None:
    at = entry.at.timestamp()
    await conn.execute(APPEND, (entry.entry_id, at, encode_audit(entry)))
    await conn.execute("DELETE FROM audit WHERE at_ts < ?", (at - AUDIT_KEEP_SECONDS,))
    await conn.execute(TRIM_BEYOND, (AUDIT_KEEP_ENTRIES,))


async def entries(conn: aiosqlite.Connection, limit: int, before: str | None) -> list[AuditEntry]:
    if before is None:
        sql, params = "SELECT data FROM audit ORDER BY entry_id DESC LIMIT ?", (limit,)
    else:
        sql = "SELECT data FROM audit WHERE entry_id < ? ORDER BY entry_id DESC LIMIT ?"
        params = (before, limit)  # type: ignore[assignment]
    rows = await conn.execute_fetchall(sql, params)
    decoded = (decode_audit(str(row[0])) for row in rows)
    return [entry for entry in decoded if entry is not None]
