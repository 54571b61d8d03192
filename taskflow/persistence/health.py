"""What is known of the backend right now: what ``/readyz`` reports about it.

The flusher says whether writes work; the upkeep loop whether the backend is open and answers
pings. Both write here; readiness reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class BackendHealth:
    """The backend's state as this instance last saw it."""

    #: Opened and its recent history restored (opening is retried until it works).
    connected: bool = False
    #: Answered its last ping within the ping timeout.
    reachable: bool = False
    #: Its last write succeeded. Only a write that works clears a failed one: a store that
    #: answers reads but refuses writes (a full disk) stays not ready.
    writes_ok: bool = True
    #: A write has gone unanswered too long (a hung server).
    stalled: bool = False
    #: Why it is not ready, for /readyz and the metrics.
    last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.connected and self.reachable and self.writes_ok and not self.stalled

    @property
    def writable(self) -> bool:
        return self.writes_ok and not self.stalled

    def clear_error(self) -> None:
        """Forget the last error once nothing is wrong any more."""
        if self.ready:
            self.last_error = None
