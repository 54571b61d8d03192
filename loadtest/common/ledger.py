"""Every task this load generator got an id for, and what was seen of it afterwards.

The ledger is what "nothing accepted is lost" is checked against: in Locust (the followers and
watchers mark each entry) and after the run by the driver, which reads the dump and looks every
id up in the backend itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

TERMINAL = frozenset({"success", "failed", "interrupted", "cancelled"})


@dataclass(slots=True)
class Accepted:
    task_id: str
    func: str
    expected: tuple[str, ...]  # terminal statuses its endpoint can end in
    via: str  # the instance that answered the enqueue request
    key: str | None = None  # idempotency key, if any
    accepted_at: float = field(default_factory=time.time)  # wall clock: compared to end_time
    accepted_mono: float = field(default_factory=time.monotonic)
    # What verification saw: the terminal status, read from an instance other than the one that
    # ran the task (so out of the shared backend), when, from which instance, and its end_time.
    status: str | None = None
    seen_at: float | None = None
    seen_by: str | None = None
    end_time: float | None = None
    verdict: str | None = None  # "ok", "lost" or "unexpected" once judged
    witness: str | None = None  # first other instance that showed it interrupted (see follow.py)


class Ledger:
    def __init__(self) -> None:
        self.entries: dict[str, Accepted] = {}

    def add(self, entry: Accepted) -> bool:
        """Record an accepted task; False when its id was already recorded (idempotency)."""
        if entry.task_id in self.entries:
            return False
        self.entries[entry.task_id] = entry
        return True

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Accepted]:
        return iter(list(self.entries.values()))

    def unjudged(self) -> list[Accepted]:
        return [e for e in self.entries.values() if e.verdict is None]

    def dump(self, path: str | Path) -> None:
        """One JSON object per line (the driver's backend check reads it)."""
        with Path(path).open("w") as out:
            for entry in self.entries.values():
                data = asdict(entry)
                del data["accepted_mono"]  # meaningless outside this process
                out.write(json.dumps(data) + "\n")


ledger = Ledger()
