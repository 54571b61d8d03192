"""Task definitions: the functions registered with ``@task_manager.task``, their names and
their retry policies."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; attempt n+1 waits ``delay * backoff**n``."""

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.delay < 0 or self.backoff < 1.0:
            raise ValueError("retries and delay must be >= 0 and backoff >= 1.0")

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        return float(self.delay * self.backoff**retry_number)


def is_async_callable(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered task: its stable name, the function, and how it is retried and recovered."""

    name: str
    func: Callable[..., Any]
    policy: RetryPolicy
    #: Run again (with its stored arguments) when its instance is lost, instead of ending
    #: ``interrupted``. For idempotent tasks only: the lost run may have done part of the work.
    requeue_on_interrupt: bool = False
    #: Seconds each attempt may run (``None``: no limit). An attempt that runs out fails with
    #: :class:`~taskflow.runner.AttemptTimedOut` and counts toward the retries; a sync attempt's
    #: thread cannot be stopped, only asked to (``task_context().cancelled``).
    timeout: float | None = None
    #: ``func`` is a coroutine function (it runs on the event loop, not in a thread). Worked out
    #: once here: inspecting the function on every run cost more than the rest of starting it.
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        object.__setattr__(self, "is_async", is_async_callable(self.func))


def adhoc_name(func: Callable[..., Any]) -> str:
    """``module.qualname``: the name of a function that was never registered."""
    module = getattr(func, "__module__", None) or "unknown"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{qualname}"


class TaskRegistry:
    """Definitions by name (the stable key everywhere) and by function object."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskDefinition] = {}
        self._by_func: dict[Callable[..., Any], TaskDefinition] = {}

    def add(self, definition: TaskDefinition) -> None:
        """Register; another function under a taken name raises ``ValueError``."""
        known = self._by_name.get(definition.name)
        if known is not None and known.func is not definition.func:
            raise ValueError(
                f"task name {definition.name!r} is already registered for "
                f"{adhoc_name(known.func)}; pass name= to register "
                f"{adhoc_name(definition.func)} under another name"
            )
        self._by_name[definition.name] = definition
        self._by_func[definition.func] = definition

    def by_name(self, name: str) -> TaskDefinition | None:
        return self._by_name.get(name)

    def for_func(self, func: Callable[..., Any]) -> TaskDefinition:
        """The registered definition, or an ad-hoc one (no retries) for other functions."""
        return self._by_func.get(func) or TaskDefinition(adhoc_name(func), func, RetryPolicy())
