"""The JSON API under ``/tasks``: list, detail, metrics, retry, cancel, bulk retry and purge,
schedules."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from taskflow.backends.base import BackendError
from taskflow.backends.codec import UnreadableRecord
from taskflow.cancel import CancelRefused
from taskflow.models import TaskRecord
from taskflow.query import MAX_LIMIT, InvalidQuery, TaskQuery
from taskflow.retry import RetryRefused
from taskflow.web import audit, metrics
from taskflow.web.audit import build_audit_router
from taskflow.web.bulk import build_bulk_router
from taskflow.web.errors import invalid

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


def present(
    manager: TaskManager, record: TaskRecord, *, include_logs: bool = True
) -> dict[str, Any]:
    """A record as the API and the dashboard stream show it: arguments only with
    ``display_func_args``, and ``retryable``: whether a retry from any instance would run.
    Listings leave the log lines out (``include_logs=False``; ``log_count`` stays)."""
    data = record.to_dict(include_args=manager.display_func_args, include_logs=include_logs)
    data["retryable"] = manager.can_retry(record)
    return data


async def _set_paused(manager: TaskManager, name: str, paused: bool) -> dict[str, Any]:
    try:
        if paused:
            await manager.pause_schedule(name)
        else:
            await manager.resume_schedule(name)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"schedule {name!r} not found") from None
    except BackendError as exc:
        raise _unavailable(exc) from None
    return {"name": name, "paused": paused}


def _unavailable(exc: BackendError) -> HTTPException:
    # Schedules live in the backend: without it there is nothing true to show or change.
    return HTTPException(status_code=503, detail=f"the schedules backend does not answer: {exc}")


def add_schedule_routes(router: APIRouter, manager: TaskManager) -> None:
    """``GET /schedules`` and ``POST /schedules/{name}/pause`` and ``/resume``."""

    @router.get(
        "/schedules",
        summary="Periodic schedules: spec, next run, last run and its status, paused",
        responses={503: {"description": "The backend does not answer"}},
    )
    async def list_schedules() -> dict[str, Any]:
        try:
            views = await manager.schedules()
        except BackendError as exc:
            raise _unavailable(exc) from None
        return {"items": [view.to_dict() for view in views]}

    @router.post(
        "/schedules/{name}/pause",
        summary="Pause a schedule on every instance",
        responses={404: {"description": "Unknown schedule"}, 503: {"description": "No backend"}},
    )
    async def pause_schedule(name: str) -> dict[str, Any]:
        return await _set_paused(manager, name, True)

    @router.post(
        "/schedules/{name}/resume",
        summary="Resume a paused schedule (missed ticks follow its catch-up policy)",
        responses={404: {"description": "Unknown schedule"}, 503: {"description": "No backend"}},
    )
    async def resume_schedule(name: str) -> dict[str, Any]:
        return await _set_paused(manager, name, False)


def build_router(manager: TaskManager, root: str = "") -> APIRouter:  # noqa: C901 - one route each
    """The API routes; the listing is at ``root`` ("" under a prefix, "/" inside a mount)."""
    router = APIRouter(tags=["taskflow"])

    @router.get(root, summary="List tasks, newest first")
    async def list_tasks(
        status: Annotated[str | None, Query(description="pending, running, success, ...")] = None,
        func_name: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        cursor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        instance_id: Annotated[str | None, Query(max_length=200)] = None,
        id_contains: Annotated[
            str | None, Query(max_length=64, description="a task id or any part of one")
        ] = None,
        tag: Annotated[
            list[str] | None,
            Query(description="key:value; several combine with AND", max_length=300),
        ] = None,
    ) -> dict[str, Any]:
        try:
            query = TaskQuery.build(
                status=status,
                func_name=func_name,
                limit=limit,
                since=since,
                until=until,
                cursor=cursor,
                tags=tag,
            )
        except InvalidQuery as exc:
            raise invalid(exc) from None
        # Instance and id prefix are not indexed by the backends: a bounded scan serves them.
        page = await manager.apage(query, instance_id=instance_id, id_contains=id_contains)
        items = [present(manager, record, include_logs=False) for record in page.records]
        return {"items": items, "next_cursor": page.next_cursor}

    @router.get("/metrics", summary="Counts by status and function, durations, flush health")
    async def get_metrics() -> dict[str, Any]:
        return await metrics.collect(manager)

    # Before GET /{task_id} and POST /{task_id}/retry, which would match these paths too.
    router.include_router(build_bulk_router(manager))
    router.include_router(build_audit_router(manager))
    # Before /{task_id}, which would take "schedules" for a task id.
    add_schedule_routes(router, manager)

    @router.get(
        "/{task_id}",
        summary="One task",
        responses={
            404: {"description": "Unknown id"},
            409: {"description": "Stored, but its record cannot be read"},
        },
    )
    async def get_task(task_id: str) -> dict[str, Any]:
        try:
            record = await manager.aget(task_id)
        except UnreadableRecord as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        if record is None:
            raise HTTPException(status_code=404, detail=f"task {task_id} not found")
        return present(manager, record)

    @router.get(
        "/{task_id}/logs",
        summary="One task's log lines (task_log and captured logging), oldest first",
        responses={404: {"description": "Unknown id"}},
    )
    async def get_logs(task_id: str) -> dict[str, Any]:
        try:
            record = await manager.aget(task_id)
        except UnreadableRecord as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        if record is None:
            raise HTTPException(status_code=404, detail=f"task {task_id} not found")
        return {
            "task_id": task_id,
            "status": record.status.value,
            "logs": record.logs or [],
            "logs_dropped": record.logs_dropped,
        }

    @router.post(
        "/{task_id}/retry",
        status_code=202,
        summary="Run a failed or interrupted task again as a new task (once: asking again "
        "returns the same retry)",
        responses={404: {"description": "Unknown id"}, 409: {"description": "Cannot retry"}},
    )
    async def retry_task(task_id: str, request: Request) -> JSONResponse:
        try:
            record = await manager.retry(task_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"task {task_id} not found") from None
        except RetryRefused as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        await audit.record(manager, request, "retry", f"task {task_id}: retry {record.task_id}")
        return JSONResponse({"task_id": record.task_id, "retry_of": task_id}, status_code=202)

    @router.post(
        "/{task_id}/cancel",
        status_code=202,
        summary="Cancel a pending or running task, wherever it runs (202: asked; the record "
        "turns cancelled once its instance has stopped it)",
        responses={
            404: {"description": "Unknown id"},
            409: {"description": "Finished already, or cannot be reached"},
        },
    )
    async def cancel_task(task_id: str, request: Request) -> JSONResponse:
        try:
            record = await manager.cancel(task_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"task {task_id} not found") from None
        except CancelRefused as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        await audit.record(manager, request, "cancel", f"task {task_id}")
        status, owner = record.status.value, record.instance_id
        return JSONResponse(
            {"task_id": task_id, "status": status, "instance_id": owner}, status_code=202
        )

    return router
