"""The audit trail over HTTP: :func:`record` notes a state-changing admin action of a request
(who, from where, what), ``GET {path}/audit`` lists the trail, newest first.

Routes that change state call :func:`record` once the action is done::

    await audit.record(manager, request, "cancel", f"task {task_id}")

The actor is how the request authenticated, never a secret: ``bearer token``, ``session
<12 hex digits>`` (a digest of the session's random id: one login's actions share it), or
``anonymous`` when no admin token is set. The client is the address the server reports
(behind a proxy trusted with ``--forwarded-allow-ips``, the real client's).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request

from taskflow.backends.base import BackendError
from taskflow.models import AuditEntry
from taskflow.persistence.audit import MAX_AUDIT_PAGE
from taskflow.web.auth import BEARER, CREDENTIAL_STATE, Credential, Session, client_address
from taskflow.web.errors import unavailable

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

#: Longest ``target`` text stored (what an action touched: a filter may be long).
MAX_TARGET_CHARS = 1000
#: An entry id as ``before`` may name one: hex digits (ids are 32).
_ENTRY_ID = re.compile(r"^[0-9a-f]{1,64}$")


def actor_of(credential: Credential | None) -> str:
    """Who made a request, as the trail shows it (never the token, never a cookie)."""
    if credential == BEARER:
        return "bearer token"
    if isinstance(credential, Session):
        digest = hashlib.sha256(f"taskflow-audit|{credential.session_id}".encode()).hexdigest()
        return f"session {digest[:12]}"
    return "anonymous"


async def record(
    manager: TaskManager,
    request: Request,
    action: str,
    target: str,
    *,
    credential: Credential | None = None,
) -> AuditEntry:
    """Add ``action`` on ``target`` by this request's client to the audit trail.

    The credential is the one the admin guard found for the request (``credential`` names it
    for the routes the guard does not cover: a login). Never raises for the backend.
    """
    if credential is None:
        credential = getattr(request.state, CREDENTIAL_STATE, None)
    if len(target) > MAX_TARGET_CHARS:
        target = target[: MAX_TARGET_CHARS - 3] + "..."
    return await manager.record_audit(
        action, target, actor=actor_of(credential), client=client_address(request)
    )


def build_audit_router(manager: TaskManager) -> APIRouter:
    """``GET /audit``, at the router that includes it (behind the admin guard)."""
    router = APIRouter()

    @router.get(
        "/audit",
        summary="The audit trail of admin actions, newest first",
        responses={503: {"description": "The history backend cannot be read"}},
    )
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 50,
        before: Annotated[
            str | None,
            Query(
                max_length=64,
                pattern=_ENTRY_ID.pattern,
                description="an entry id: the page after it (next_before)",
            ),
        ] = None,
    ) -> dict[str, Any]:
        try:
            entries = await manager.audit_log(limit + 1, before)
        except BackendError as exc:
            raise unavailable(exc) from None
        more = len(entries) > limit
        entries = entries[:limit]
        return {
            "items": [entry.to_dict() for entry in entries],
            "next_before": entries[-1].entry_id if more and entries else None,
        }

    return router
