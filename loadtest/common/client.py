"""Enqueueing through the load balancer, and reading which instance answered."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from common import measure
from common.ledger import Accepted, ledger

logger = logging.getLogger("taskflow.loadtest")

#: The reference app names the instance (gunicorn worker) that answered in this header.
INSTANCE_HEADER = "X-Taskflow-Instance"


def auth_headers() -> dict[str, str]:
    """The admin token as a bearer header, when the stack has one (Compose and Kubernetes always
    do: TASKFLOW_ADMIN_TOKEN is passed to Locust as to the instances); the API, the stream and
    the dashboard then require it."""
    token = os.environ.get("TASKFLOW_ADMIN_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def served_by(response: Any) -> str | None:
    headers = response.headers
    return None if headers is None else headers.get(INSTANCE_HEADER)


def body(response: Any) -> Any:
    """The JSON body of a response inside ``catch_response``; None (and a failure) when the
    status is not 200 or the body is not JSON (a connection cut short by a stopping instance)."""
    if response.status_code != 200:
        response.failure(f"answered {response.status_code}")
        return None
    try:
        return response.json()
    except ValueError:
        response.failure("answered 200 without a JSON body")
        return None


def end_time(item: dict[str, Any]) -> float | None:
    """A record's end_time (ISO 8601 with offset) as epoch seconds."""
    raw = item.get("end_time")
    return datetime.fromisoformat(raw).timestamp() if raw else None


def enqueue(
    user: Any,
    path: str,
    *,
    func: str,
    expected: Iterable[str],
    params: dict[str, Any] | None = None,
    key: str | None = None,
) -> list[Accepted]:
    """POST ``path`` through the load balancer; every task id in the answer is accepted.

    Ids go into the ledger and each counts as one ``task/accepted`` sample. An answer that is not
    a 200 with ids is a failure of the request itself (and accepts nothing).
    """
    url = f"{path}?{urlencode(params)}" if params else path
    with user.client.post(url, name=path, catch_response=True) as response:
        answer = body(response)
        if answer is None:
            return []
        try:
            ids = answer["task_ids"] if "task_ids" in answer else [answer["task_id"]]
        except (KeyError, TypeError):
            response.failure("enqueue answered without task ids")
            return []
        if not ids or not all(isinstance(i, str) for i in ids):
            response.failure("enqueue answered without task ids")
            return []
        ms = response.request_meta["response_time"]
    via = str(answer.get("instance_id") or served_by(response) or "")
    accepted = []
    for task_id in ids:
        entry = Accepted(task_id, func, tuple(expected), via, key)
        if ledger.add(entry):
            accepted.append(entry)
            measure.fire(user.environment, measure.TASK, "accepted", ms)
    return accepted
