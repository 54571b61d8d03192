"""Bulk actions of the API: ``POST {path}/bulk/retry`` and ``POST {path}/bulk/purge``.

Both take the listing's filters as a JSON body, count first with ``"dry_run": true`` and act
within a ``limit`` (see docs/operations.md). Admin only when a token is set (the router is
mounted behind the guard like the rest of the API).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskflow.backends.base import BackendError
from taskflow.persistence.bulk import DEFAULT_PURGE_LIMIT, MAX_PURGE_LIMIT
from taskflow.query import MAX_CURSOR_CHARS, InvalidQuery, cursor_after
from taskflow.retry import DEFAULT_BULK_RETRY_LIMIT, MAX_BULK_RETRY_LIMIT
from taskflow.web import audit
from taskflow.web.errors import invalid, unavailable

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class BulkFilter(BaseModel):
    """The tasks a bulk action applies to: the listing's filters (``since``/``until`` bound
    the sort time, the end time of a finished task, inclusive)."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, max_length=40)
    func_name: str | None = Field(None, min_length=1, max_length=500)
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = Field(False, description="only count the tasks that match")


class BulkRetryRequest(BulkFilter):
    """Retry every failed or interrupted task that matches (``status``: one of the two)."""

    cursor: str | None = Field(
        None,
        max_length=MAX_CURSOR_CHARS,
        description="next_cursor of the call before: go on after the tasks it examined",
    )
    limit: int = Field(
        DEFAULT_BULK_RETRY_LIMIT,
        ge=1,
        le=MAX_BULK_RETRY_LIMIT,
        description="most retries this call starts",
    )


class PurgeRequest(BulkFilter):
    """Delete the finished tasks that match (``until`` alone: older than it)."""

    limit: int = Field(
        DEFAULT_PURGE_LIMIT, ge=1, le=MAX_PURGE_LIMIT, description="most tasks this call deletes"
    )
    confirm: bool = Field(False, description="must be true unless dry_run: a purge deletes")


#: What the routes answer besides 200 (they parse their body themselves, so FastAPI does not
#: document their 422 on its own; the body is FastAPI's HTTPValidationError all the same).
RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "The body is too large"},
    422: {
        "description": "A bad filter, limit or body (or a purge without confirm)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    },
    503: {"description": "The history backend is not ready"},
}
#: Largest JSON body a bulk action accepts (bytes); filters take a few hundred.
MAX_BODY_BYTES = 16 * 1024

M = TypeVar("M", bound=BaseModel)


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses ``model`` itself (see :func:`parse`)."""
    schema = model.model_json_schema()
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


async def parse(request: Request, model: type[M]) -> M:
    """The JSON body as ``model`` (an empty body: every default), or a 422 whose body repeats
    nothing of the input. Parsed here rather than by FastAPI, whose 422 echoes the input: a
    number such as ``1e999`` becomes an infinity that no JSON response can hold (a 500)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant) if raw else {}
    except (ValueError, RecursionError):
        error = {"type": "json_invalid", "loc": ("body",), "msg": "the body is not valid JSON"}
        raise RequestValidationError([error]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        located = [{**error, "loc": ("body", *error["loc"])} for error in errors]
        raise RequestValidationError(located) from None


def described(body: BulkFilter) -> str:
    """The filters of a bulk action, for its audit entry."""
    parts = [
        f"{name}={value.isoformat() if isinstance(value, datetime) else value!r}"
        for name in ("status", "func_name", "since", "until")
        if (value := getattr(body, name)) is not None
    ]
    return "tasks " + (" ".join(parts) if parts else "(every one)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build_bulk_router(manager: TaskManager) -> APIRouter:
    """The bulk routes, at ``/bulk/...`` of the router that includes them."""
    router = APIRouter()

    @router.post(
        "/bulk/retry",
        summary="Retry every failed or interrupted task that matches (dry_run: count them)",
        responses=RESPONSES,
        openapi_extra=documented(BulkRetryRequest),
    )
    async def bulk_retry(request: Request) -> dict[str, Any]:
        body = await parse(request, BulkRetryRequest)
        try:
            result = await manager.retry_many(
                status=body.status,
                func_name=body.func_name,
                since=body.since,
                until=body.until,
                limit=body.limit,
                dry_run=body.dry_run,
                cursor=body.cursor,
            )
        except InvalidQuery as exc:
            raise invalid(exc, "body") from None
        except BackendError as exc:
            raise unavailable(exc) from None
        if body.dry_run:
            return {"dry_run": True, "matched": result.matched}
        last = result.last_examined
        summary = (
            f"{described(body)}: retried {len(result.retried)} of {result.matched} matched "
            f"({result.already_retried} retried already, {result.refused} refused"
            f"{', more left' if result.more else ''})"
        )
        await audit.record(manager, request, "bulk retry", summary)
        return {
            "dry_run": False,
            "matched": result.matched,
            "retried": len(result.retried),
            "retries": [{"task_id": new, "retry_of": old} for old, new in result.retried.items()],
            "already_retried": result.already_retried,
            "refused": result.refused,
            "refusals": [{"task_id": t, "reason": r} for t, r in result.refusals.items()],
            "more": result.more,
            "next_cursor": cursor_after(last) if result.more and last is not None else None,
        }

    @router.post(
        "/bulk/purge",
        summary="Delete finished tasks that match, oldest first (dry_run: count them)",
        responses=RESPONSES,
        openapi_extra=documented(PurgeRequest),
    )
    async def bulk_purge(request: Request) -> dict[str, Any]:
        body = await parse(request, PurgeRequest)
        if not body.dry_run and not body.confirm:
            exc = InvalidQuery(
                "a purge deletes history: count first with dry_run, then send confirm: true",
                field="confirm",
            )
            raise invalid(exc, "body")
        try:
            result = await manager.purge(
                status=body.status,
                func_name=body.func_name,
                since=body.since,
                until=body.until,
                limit=body.limit,
                dry_run=body.dry_run,
            )
        except InvalidQuery as exc:
            raise invalid(exc, "body") from None
        except BackendError as exc:
            raise unavailable(exc) from None
        if body.dry_run:
            return {"dry_run": True, "matched": result.matched}
        summary = (
            f"{described(body)}: purged {result.purged} of {result.matched} matched"
            f"{', more left' if result.more else ''}"
        )
        await audit.record(manager, request, "purge", summary)
        return {
            "dry_run": False,
            "matched": result.matched,
            "purged": result.purged,
            "more": result.more,
        }

    return router
