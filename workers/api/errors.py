"""JSON errors: ``{"error": "...", "detail": ...}`` with the right status, never an HTML page."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from ..exceptions import CrucibleError, InvalidTaskSpec, TaskNotFound, WorkerNotFound
from ..runs.errors import LockHeld, RunNotFound

BEARER_REALM = 'Bearer realm="crucible"'


class ApiError(Exception):
    """An answer other than success; ``status`` and ``detail`` go into the response."""

    status = 400

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ApiError):
    """Input that cannot be used; ``field`` names the body field or query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", {"field": field})
        self.field = field
        self.reason = message  # without the field's name


class NotAuthenticated(ApiError):
    status = 401

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token

    def headers(self) -> dict[str, str]:
        challenge = f'{BEARER_REALM}, error="invalid_token"' if self.invalid_token else BEARER_REALM
        return {"WWW-Authenticate": challenge}


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"method {method} is not allowed here", {"allowed": allowed})
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class Conflict(ApiError):
    """The request is valid but the current state of the object does not allow it."""

    status = 409


def from_engine(exc: CrucibleError) -> ApiError:
    """Translate an engine refusal into the API's error of the same meaning."""
    if isinstance(exc, InvalidTaskSpec):
        return BadRequest(exc.field, exc.message)
    if isinstance(exc, WorkerNotFound | TaskNotFound | RunNotFound):
        return NotFound(str(exc))
    if isinstance(exc, LockHeld):
        return Conflict(str(exc), {"holders": exc.holders})
    # IllegalTransition and every other refusal: the request is fine, the state says no.
    return Conflict(str(exc))


def response(exc: ApiError) -> JsonResponse:
    body = {"error": exc.message, "detail": exc.detail}
    return JsonResponse(body, status=exc.status, headers=exc.headers())
