"""The audit trail when the backend cannot take an entry: the action is not failed, the entry
is logged in full and kept in this instance's memory, where the list shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskflow.backends.base import BackendError
from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import AuditEntry
from taskflow.persistence.audit import MEMORY_AUDIT_ENTRIES, AuditTrail


def entry(action: str) -> AuditEntry:
    return AuditEntry.new(action, "task t", actor="bearer token", client="::1", instance_id="i")


async def test_an_entry_the_backend_refuses_is_logged_and_listed_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    await backend.open()
    try:
        trail = AuditTrail(backend)
        stored = entry("retry")
        await trail.append(stored)

        async def refuse(_: AuditEntry) -> None:
            raise BackendError("disk full")

        monkeypatch.setattr(backend, "append_audit", refuse)
        kept = entry("purge")
        await trail.append(kept)  # does not raise
        assert "could not be stored" in caplog.text and kept.entry_id in caplog.text
        assert await trail.entries(10) == [kept, stored]
        assert await trail.entries(10, before=kept.entry_id) == [stored]
    finally:
        await backend.close()


async def test_without_a_backend_the_trail_is_bounded_in_memory() -> None:
    trail = AuditTrail(None)
    entries = [entry(f"a{n}") for n in range(MEMORY_AUDIT_ENTRIES + 5)]
    for item in entries:
        await trail.append(item)
    listed: list[AuditEntry] = []
    while page := await trail.entries(500, before=listed[-1].entry_id if listed else None):
        listed += page
    assert listed == entries[5:][::-1]  # newest first, in order within a millisecond too
