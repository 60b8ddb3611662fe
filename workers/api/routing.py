"""One URL's operations, by method: check the method, the caller, the permission; translate
every refusal into a JSON error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..exceptions import CrucibleError
from . import auth, errors, parsing
from .errors import ApiError, MethodNotAllowed

Handler = Callable[..., HttpResponse]


@dataclass(frozen=True, slots=True)
class Operation:
    """A handler for one method, and the permission it needs (None: anyone may call it)."""

    method: str
    permission: str | None
    handler: Handler


def operation(method: str, permission: str | None) -> Callable[[Handler], Operation]:
    def wrap(handler: Handler) -> Operation:
        return Operation(method, permission, handler)

    return wrap


class Route:
    """The view of one URL. Exempt from the CSRF middleware: :mod:`.auth` runs the same
    check itself for session requests, and skips it only for a valid bearer token."""

    csrf_exempt = True

    def __init__(self, *operations: Operation) -> None:
        self.operations = {op.method: op for op in operations}

    @property
    def methods(self) -> list[str]:
        return sorted(self.operations)

    def __call__(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        try:
            return self._dispatch(request, **kwargs)
        except CrucibleError as exc:
            return errors.response(errors.from_engine(exc))
        except ApiError as exc:
            return errors.response(exc)
        except parsing.UNREADABLE as exc:  # raised by whoever reads the body first
            return errors.response(parsing.unreadable(exc))

    def _dispatch(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        op = self.operations.get(request.method or "")
        if op is None:
            raise MethodNotAllowed(request.method or "", self.methods)
        auth.authenticate(request, public=op.permission is None)
        if op.permission is not None:
            auth.authorize(request.user, op.permission)
        return op.handler(request, **kwargs)
