"""``GET {path}/stream``: the dashboard's live feed, as server-sent events.

Every event's data is JSON; nothing repeats the whole list, clients patch what they show::

    retry: 2000        reconnect after 2 s (through a load balancer, maybe to another instance)
    event: hello       {"instance_id", "heartbeat", "display_func_args"}: (re)load the view now
    event: task        {"kind": "created" | "started" | "retrying" | "finished" | "updated",
                        "source": "local" | "history", "task": <a record as GET /tasks/{id}>}
    event: metrics     the figures of GET /tasks/metrics that changed (absolute values; null: gone)
    event: resync      this client fell behind and events were dropped: reload the view
    event: bye         {"reason": "shutdown"}: the server is shutting down; the browser
                       reconnects by itself. {"reason": "session ended"}: the login session
                       expired or was ended by a logout (checked at every heartbeat)
    : ping             a comment every ``heartbeat`` seconds keeps proxies from closing the stream

The response sends ``X-Accel-Buffering: no`` so nginx passes each event on at once, and
``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from taskflow.dashboard.hub import BYE, Message, StreamHub, Subscription
from taskflow.web.auth import AdminAuth, Credential

#: Longest wait between checks for a shutdown or a departed client (seconds).
TICK_SECONDS = 0.5
#: Milliseconds a browser waits before it reconnects a closed stream.
RETRY_MS = 2000
#: Most queued messages written in one chunk.
BATCH = 100
#: Sent with every stream: never stored (events carry arguments and errors), and no buffering
#: in nginx (it honours this header).
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
#: Sent before the stream closes because its login session expired or was revoked.
SESSION_ENDED = Message("bye", '{"reason": "session ended"}')


def build_stream_router(hub: StreamHub, auth: AdminAuth, *, heartbeat: float = 15.0) -> APIRouter:
    """The stream route; ``auth`` guards it and re-checks a session at every heartbeat."""
    if heartbeat <= 0:
        raise ValueError("the stream heartbeat must be greater than 0 seconds")
    router = APIRouter(tags=["taskflow"])

    @router.get(
        "/stream",
        summary="Live updates as server-sent events",
        response_class=StreamingResponse,
    )
    # Depends() as a default, not in Annotated: annotations are strings here, resolved against
    # the module's names, and `auth` is not one of them.
    async def stream(
        request: Request, credential: Credential | None = Depends(auth.guard)
    ) -> StreamingResponse:
        async def alive() -> bool:
            return await auth.still_valid(credential)

        return StreamingResponse(
            events(hub, request, heartbeat, alive), media_type="text/event-stream", headers=HEADERS
        )

    return router


async def _next(subscription: Subscription, timeout: float) -> list[Message]:
    """Up to :data:`BATCH` queued messages, waiting at most ``timeout`` for the first."""
    queue = subscription.queue
    if queue.empty():
        try:
            first = await asyncio.wait_for(queue.get(), max(timeout, 0.001))
        except asyncio.TimeoutError:
            return []
        batch = [first]
    else:
        batch = []
    while len(batch) < BATCH and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


async def events(
    hub: StreamHub,
    request: Request,
    heartbeat: float,
    alive: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """The event stream of one client: hello, then updates and heartbeats until shutdown, or
    until ``alive()``, asked at every heartbeat, says the client's session has ended."""
    subscription = hub.subscribe()
    try:
        hello = {
            "instance_id": hub.manager.instance_id,
            "heartbeat": heartbeat,
            "display_func_args": hub.manager.display_func_args,
        }
        yield f"retry: {RETRY_MS}\n" + Message("hello", json.dumps(hello)).encode()
        next_beat = time.monotonic() + heartbeat
        while not hub.closing:
            wait = min(TICK_SECONDS, next_beat - time.monotonic())
            batch = await _next(subscription, wait)
            if BYE in batch:
                break
            if batch:
                yield "".join(message.encode() for message in batch)
            if time.monotonic() >= next_beat:
                if not await alive():
                    yield SESSION_ENDED.encode()
                    return
                next_beat = time.monotonic() + heartbeat
                yield ": ping\n\n"
            if await request.is_disconnected():
                return
        yield BYE.encode()
    finally:
        hub.unsubscribe(subscription)
