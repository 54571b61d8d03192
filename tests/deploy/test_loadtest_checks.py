"""The load tests' plain-Python parts, fast: the SSE reader, the summary lines, and the
driver's backend check on a real SQLite file (loadtest/backend_check.py), which must notice what
is missing, unfinished, unexpected, or run twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loadtest import backend_check
from loadtest.common.lines import lines
from loadtest.common.sse import events
from taskflow.backends import SqliteBackend
from taskflow.models import TaskRecord, TaskStatus, new_task_id, utcnow


def test_sse_reader_splits_events_across_chunks():
    chunks = [b'retry: 2000\nevent: hello\ndata: {"heartbeat": 15', b"}\n\n: ping\n\nevent: ta"]
    chunks += [b'sk\ndata: {"kind": "finished"}\n\n', b"event: bye\ndata: {}\n\n"]
    assert list(events(chunks)) == [
        ("hello", {"heartbeat": 15}),
        ("ping", None),
        ("task", {"kind": "finished"}),
        ("bye", {}),
    ]


def test_summary_lines_name_every_figure():
    summary = {
        "accepted": 10,
        "finished": 9,
        "lost": 1,
        "interrupted": 0,
        "lag_ms": {"p50": 1, "p95": 2, "p99": 3, "max": 4},
        "throughput": {"accepted_per_s": 5.0, "requests_per_s": 6.0},
        "load_seconds": 2.0,
        "http": {"requests": 7, "failures": 0},
        "extra": {"rounds": "3"},
    }
    text = "\n".join(lines(summary))
    for part in ("accepted 10", "finished 9", "lost 1", "p99 3", "5.0 tasks/s", "rounds  3"):
        assert part in text


def store(path: Path, records: list[TaskRecord]) -> None:
    async def save() -> None:
        backend = SqliteBackend(path)
        await backend.open()
        try:
            await backend.save(records)
        finally:
            await backend.close()

    asyncio.run(save())


def record(status: TaskStatus, func: str = "fast_task", key: str | None = None) -> TaskRecord:
    done = utcnow() if status.finished else None
    return TaskRecord(new_task_id(), func, status, end_time=done, idempotency_key=key)


def accepted(rec: TaskRecord, expected: tuple[str, ...] = ("success",)) -> dict[str, Any]:
    return {
        "task_id": rec.task_id,
        "func": rec.func_name,
        "expected": list(expected),
        "key": rec.idempotency_key,
    }


def test_backend_check_passes_when_everything_accepted_is_stored_finished(tmp_path):
    records = [record(TaskStatus.SUCCESS), record(TaskStatus.FAILED, "failing_task")]
    store(tmp_path / "t.db", records)
    ledger = [accepted(records[0]), accepted(records[1], ("failed",))]
    url = f"sqlite:///{tmp_path}/t.db"
    figures, problems = backend_check.check(url, ledger, "flush", tmp_path)
    assert problems == []
    assert figures["stored_finished"] == 2 and figures["statuses"] == {"success": 1, "failed": 1}


def test_backend_check_names_missing_unfinished_and_unexpected_tasks(tmp_path):
    ok, live, odd = (
        record(TaskStatus.SUCCESS),
        record(TaskStatus.RUNNING),
        record(TaskStatus.INTERRUPTED),
    )
    never = record(TaskStatus.SUCCESS)
    store(tmp_path / "t.db", [ok, live, odd])
    url = f"sqlite:///{tmp_path}/t.db"
    ledger = [accepted(r) for r in (ok, live, odd, never)]
    _, problems = backend_check.check(url, ledger, "visibility", tmp_path)
    text = "\n".join(problems)
    assert "1 accepted tasks are not in the backend" in text and never.task_id in text
    assert "1 accepted tasks are stored but not finished" in text and live.task_id in text
    assert "1 tasks finished unexpectedly" in text and "fast_task interrupted" in text
    assert "still holds live records after the run: {'running': 1}" in text
    assert "fast_task: 4 accepted, 3 stored in the backend" in text


def test_backend_check_compares_stored_counts_with_accepted_ones(tmp_path):
    mine, nobodys = record(TaskStatus.SUCCESS), record(TaskStatus.INTERRUPTED)
    store(tmp_path / "t.db", [mine, nobodys])
    url = f"sqlite:///{tmp_path}/t.db"
    _, problems = backend_check.check(url, [accepted(mine)], "visibility", tmp_path)
    assert problems == ["fast_task: 1 accepted, 2 stored in the backend"]
    # A chaos run may store tasks whose requests failed in flight (nobody got their ids), and
    # tolerates interrupted ones.
    assert backend_check.check(url, [accepted(mine)], "chaos", tmp_path)[1] == []


def test_backend_check_counts_executions_per_idempotency_key(tmp_path):
    once, twice = (
        record(TaskStatus.SUCCESS, "once_task", "k1"),
        record(TaskStatus.SUCCESS, "once_task", "k2"),
    )
    store(tmp_path / "t.db", [once, twice])
    (tmp_path / "app-1.log").write_text("INFO deploy.app once_task ran for key k1\n")
    (tmp_path / "app-2.log").write_text("once_task ran for key k2\nonce_task ran for key k2\n")
    ledger = [accepted(once), accepted(twice)]
    url = f"sqlite:///{tmp_path}/t.db"
    figures, problems = backend_check.check(url, ledger, "idempotency", tmp_path)
    assert figures["keys"] == 2 and figures["executions"] == 3
    assert problems == [
        "1 keys did not run exactly once (executions in the instances' logs: k2: 2)"
    ]
