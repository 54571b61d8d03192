"""Custom measurements, reported through Locust's request event.

They land in the same statistics as HTTP requests (console, CSV, HTML report, and the master's
aggregate in distributed runs), each under its own request type:

==============  ==================  =====================================================
request type    name                one sample is
==============  ==================  =====================================================
history_lag     the task function   a task seen finished by another instance: ms from its
                                    end_time to that moment; a failure when lost
persist         the task function   flush: ms from end_time to its first appearance in
                                    another instance's GET /tasks listing
task            accepted,           one task id returned by an enqueue request, or one
                interrupted         task that finished as interrupted
sse             event gap, stream   ms since the stream's previous event; one closed stream
idempotency     round, late dup.    one key sent several times at once / again later
chaos           restart app-N, ...  one action of the chaos controller
==============  ==================  =====================================================

Failures carry one of the exception classes below; their messages name no task id, so Locust
groups them into one line per kind (examples go to the log and the ledger file).
"""

from __future__ import annotations

from typing import Any

LAG = "history_lag"
PERSIST = "persist"
TASK = "task"
SSE = "sse"
IDEMPOTENCY = "idempotency"
CHAOS = "chaos"
#: Request types that are ours; everything else is an HTTP method.
CUSTOM_TYPES = frozenset({LAG, PERSIST, TASK, SSE, IDEMPOTENCY, CHAOS})


class TaskLost(Exception):
    """An accepted task never showed as finished on another instance (or in the backend)."""


class UnexpectedStatus(Exception):
    """A task finished, but not in a status its endpoint can produce."""


class PersistedLate(Exception):
    """A finished task took longer than the bound to show in another instance's listing."""


class StreamFailure(Exception):
    """A dashboard stream went silent, broke, or never showed another instance's task."""


class DuplicateTask(Exception):
    """One idempotency key produced more than one task id."""


class ChaosFailure(Exception):
    """The chaos controller could not restart or kill an instance."""


class MissingHeader(Exception):
    """Responses do not say which instance answered: not the reference app (deploy/app.py)."""


def fire(
    environment: Any,
    request_type: str,
    name: str,
    ms: float = 0.0,
    error: Exception | None = None,
    length: int = 0,
) -> None:
    environment.events.request.fire(
        request_type=request_type,
        name=name,
        response_time=max(0.0, ms),
        response_length=length,
        exception=error,
        context={},
    )
