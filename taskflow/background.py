"""Managed ``BackgroundTasks``: ``add_task`` returns the tracked task's id, and a request's
tasks are accepted with its response.

Two ways in:

* ``Depends(task_manager.get_tasks)`` needs no installation: it wraps the request's own
  ``BackgroundTasks`` and binds it to that manager.
* :func:`install` (done by ``TaskAdmin(auto_install=True)``) makes every route that keeps its
  ``background_tasks: BackgroundTasks`` annotation receive a managed instance. FastAPI builds that
  object from ``fastapi.dependencies.utils.BackgroundTasks``; we point that name at a subclass
  that finds the app's manager through a context variable set by a small ASGI middleware. In
  apps without ``TaskAdmin`` the subclass behaves exactly like FastAPI's own class.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import fastapi.dependencies.utils as fastapi_dependency_utils
from fastapi import BackgroundTasks
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.launch import Acceptor, Launch, Starter


class _Request:
    """What the middleware tells code running in one request: its app's acceptor, and the
    background tasks the request queued."""

    __slots__ = ("accepted", "acceptor", "delayed", "inject", "launches")

    def __init__(self, acceptor: Acceptor, inject: bool) -> None:
        self.acceptor = acceptor
        #: ``TaskAdmin(auto_install=True)``: FastAPI's own ``BackgroundTasks`` parameters of
        #: this app get the manager.
        self.inject = inject
        #: The request's background tasks, in the order they were queued.
        self.launches: list[Launch] = []
        #: How many of them the held response has accepted (see :class:`_HeldResponse`).
        self.accepted = 0
        #: Writes of the delayed tasks it queued (``run_at=``/``countdown=``) not yet awaited.
        self.delayed: list[Future[None]] = []


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "taskflow_request", default=None
)


class ManagedBackgroundTasks(BackgroundTasks):
    """FastAPI ``BackgroundTasks`` whose ``add_task`` tracks the task and returns its id.

    Without a manager (none bound, none installed for the current app) it is a plain
    ``BackgroundTasks`` and ``add_task`` returns ``None``.
    """

    def __init__(self, tasks: Any = None, *, acceptor: Acceptor | None = None) -> None:
        super().__init__(tasks)
        self._acceptor = acceptor

    def add_task(  # type: ignore[override]
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> str | None:
        """Track ``func(*args, **kwargs)`` and return its id.

        ``idempotency_key="..."`` (taken out of the keyword arguments) makes every instance
        return the same id for one key while that task is pending, running or succeeded.
        ``tags={"tenant": "acme"}`` (taken out too) labels the task for ``GET /tasks?tag=...``;
        invalid tags raise ``ValueError``.
        ``run_at=`` (a timezone-aware datetime) or ``countdown=`` (seconds), also taken out,
        delay a registered task: it is stored as ``scheduled`` and runs then, on whichever
        instance claims it (see docs/schedules.md).
        """
        request = _request.get()
        acceptor = self._acceptor
        if acceptor is None:
            acceptor = request.acceptor if request is not None and request.inject else None
        if acceptor is None:
            super().add_task(func, *args, **kwargs)
            return None
        if "run_at" in kwargs or "countdown" in kwargs:
            if acceptor.delay is None:
                raise RuntimeError("this manager cannot delay tasks")
            run_at, countdown = kwargs.pop("run_at", None), kwargs.pop("countdown", None)
            task_id, stored = acceptor.delay(func, args, kwargs, run_at, countdown)
            if request is not None:
                request.delayed.append(stored)  # its response waits for the write
            return task_id
        key = kwargs.pop("idempotency_key", None)
        tags = kwargs.pop("tags", None)
        # In a request through the middleware, its response accepts the task (see
        # _HeldResponse); a request that raises never runs it (recorded as never run).
        record, starter = acceptor.enqueue(
            func, args, kwargs, idempotency_key=key, held=request is not None, tags=tags
        )
        if request is not None and isinstance(starter, Launch):
            request.launches.append(starter)
        self.tasks.append(_Scheduled(func, starter))  # type: ignore[arg-type]  # duck-typed
        return record.task_id


class _Scheduled:
    """What FastAPI runs after the response: starts the tracked task.

    Starlette runs a request's background tasks by calling each one and awaiting what it
    returns, and FastAPI only reads ``.func`` (telemetry): a plain class does, without
    ``BackgroundTask.__init__``'s introspection of the callable, which costs more than the rest
    of ``add_task``. The call is not a coroutine: it starts the task and returns what to await
    (usually nothing left).
    """

    __slots__ = ("args", "func", "kwargs", "start")

    def __init__(self, func: Callable[..., Any], starter: Starter) -> None:
        self.func = func
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.start: Starter = getattr(starter, "after_response", starter)

    def __call__(self) -> Awaitable[None]:
        return self.start()


def bind(acceptor: Acceptor, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
    """A managed view of the request's ``background_tasks``: tasks run after the response."""
    managed = ManagedBackgroundTasks(acceptor=acceptor)
    managed.tasks = background_tasks.tasks  # share the list FastAPI runs after the response
    return managed


def install() -> None:
    """Make FastAPI build :class:`ManagedBackgroundTasks` for ``BackgroundTasks`` parameters."""
    fastapi_dependency_utils.BackgroundTasks = ManagedBackgroundTasks  # type: ignore[attr-defined]


class TasksMiddleware:
    """Pure ASGI middleware: requests to this app see its manager's acceptor in the context
    variable (``inject``: also FastAPI's own ``BackgroundTasks`` parameters, see
    :func:`install`), and their responses accept their tasks."""

    def __init__(self, app: ASGIApp, acceptor: Acceptor, inject: bool = True) -> None:
        self.app = app
        self.acceptor = acceptor
        self.inject = inject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request(self.acceptor, self.inject)
        token = _request.set(request)
        try:
            if not self.acceptor.durable_accept:
                await self.app(scope, receive, send)
                return
            held = _HeldResponse(request, send)
            try:
                await self.app(scope, receive, held.send)
            except Exception:
                if held.complete:  # the response was whole; what failed came after it
                    await held.release()
                raise
            await held.release()
        finally:
            _request.reset(token)
            # FastAPI has run every background task it is going to run: the rest never will.
            for launch in request.launches:
                launch.abandon()


class _HeldResponse:
    """The response of a request that enqueued tasks, held until the write carrying them
    succeeded: an accepted task must survive a SIGKILL right after the client got its id
    (milliseconds; skipped while the backend is down, bounded by ``accept_timeout``).

    A whole response is kept here and sent after the app has returned, so what the app and
    its middleware built for the request is freed while the write is under way instead of
    being kept alive into the garbage collector's older generations. A streaming response
    waits at its first body part instead.
    """

    __slots__ = ("_send", "complete", "messages", "request", "ticket")

    def __init__(self, request: _Request, send: Send) -> None:
        self.request = request
        self._send = send
        self.messages: list[Message] = []
        self.ticket: Awaitable[bool] | None = None
        self.complete = False

    async def send(self, message: Message) -> None:
        """The ``send`` the app gets."""
        if self.messages:
            self.messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.complete = True  # sent by release() once the app has returned
                return
            await self.release()
            return
        request = self.request
        starting = message["type"] == "http.response.start"
        if starting and (len(request.launches) > request.accepted or request.delayed):
            ticket = None
            if len(request.launches) > request.accepted:
                accepted, request.accepted = request.accepted, len(request.launches)
                # A success starts its tasks first: a short one has finished when the commit
                # takes its batch, and is written once instead of twice. Not an error: FastAPI
                # runs no background tasks of a request that raised.
                success = 200 <= message["status"] < 300
                for launch in request.launches[accepted:]:
                    launch.accept(success)
                ticket = request.acceptor.persist_soon()
            if request.delayed:
                delayed, request.delayed = request.delayed, []
                ticket = _delayed_stored(ticket, delayed, request.acceptor.accept_timeout)
            self.ticket = ticket
            self.messages.append(message)
            return
        await self._send(message)

    async def release(self) -> None:
        """Wait for the write, then send what is held."""
        if not self.messages:
            return
        if self.ticket is not None:
            await self.ticket
            self.ticket = None
        messages, self.messages = self.messages, []
        for message in messages:
            await self._send(message)


async def _delayed_stored(
    ticket: Awaitable[bool] | None, delayed: list[Future[None]], timeout: float
) -> bool:
    """The held response's wait when it queued delayed tasks: their own writes (they go to the
    schedule store, not through the group commit) besides the commit's, bounded by
    ``accept_timeout`` like it."""
    writes = [asyncio.wrap_future(future) for future in delayed]
    done, _ = await asyncio.wait(writes, timeout=timeout)
    committed = True if ticket is None else await ticket
    return committed and len(done) == len(writes)
