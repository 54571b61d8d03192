"""The SQLite backend's revoked sessions (schema version 3): one row per logout, kept until the
session would have expired. Each function is one step run inside a ``BEGIN IMMEDIATE``
transaction (or a read)."""

from __future__ import annotations

import aiosqlite

REVOKE = """
    INSERT INTO revoked_sessions (session_id, expires_ts) VALUES (?, ?)
    ON CONFLICT (session_id) DO UPDATE SET expires_ts = max(expires_ts, excluded.expires_ts)
"""


async def revoke(
    conn: aiosqlite.Connection, session_id: str, expires_ts: float, now: float
) -> None:
    # Expired rows go with the next logout: the table holds one session lifetime of logouts.
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_ts <= ?", (now,))
    if expires_ts > now:
        await conn.execute(REVOKE, (session_id, expires_ts))


async def revoked(conn: aiosqlite.Connection, session_id: str, now: float) -> bool:
    rows = await conn.execute_fetchall(
        "SELECT 1 FROM revoked_sessions WHERE session_id = ? AND expires_ts > ?", (session_id, now)
    )
    return bool(list(rows))
