"""How the API answers a request it cannot serve: a bad filter (422) or a backend that is not
ready for an action that needs it (503)."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from taskflow.backends.base import BackendError
from taskflow.query import InvalidQuery


def invalid(exc: InvalidQuery, where: str = "query") -> RequestValidationError:
    """An :class:`InvalidQuery` as FastAPI's own validation error, so the 422 body is the one
    the OpenAPI schema documents (HTTPValidationError: a list of {loc, msg, type})."""
    error = {"type": "value_error", "loc": (where, exc.field or where), "msg": str(exc)}
    return RequestValidationError([error])


def unavailable(exc: BackendError) -> HTTPException:
    return HTTPException(status_code=503, detail=str(exc))
