"""In-process lifecycle events: what the flusher, the stream and metrics listen to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from taskflow.models import TaskRecord

logger = logging.getLogger("taskflow.events")


class EventKind(str, Enum):
    CREATED = "created"
    STARTED = "started"
    RETRYING = "retrying"
    #: The running task logged a line or reported progress (throttled per task).
    UPDATED = "updated"
    FINISHED = "finished"


class Listener(Protocol):
    """Called synchronously on the event loop for every event; must be quick and not block.

    Gets the kind and the record as two arguments rather than one event object: three events
    per task, and an object each was a measurable share of a small task's cost.
    """

    def __call__(self, kind: EventKind, record: TaskRecord) -> None: ...


class EventBus:
    """Fan events out to listeners. A failing listener is logged and never hurts the task."""

    def __init__(self) -> None:
        # A tuple, replaced on (un)subscribe: publishing iterates it without copying it first.
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it again."""
        self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            self._listeners = tuple(known for known in self._listeners if known is not listener)

        return unsubscribe

    def publish(self, kind: EventKind, record: TaskRecord) -> None:
        for listener in self._listeners:
            try:
                listener(kind, record)
            except Exception:
                logger.exception("taskflow event listener %r failed on %s", listener, kind.value)
