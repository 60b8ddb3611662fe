"""Answers for API requests no route's handler answers: a path no route matches, and the
errors Django raises around a view (a Host header it refuses, a server error).

Under the API's paths they are JSON like every other answer, as docs/api.md promises;
elsewhere (the admin, the panel) Django's own pages stay.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from . import errors
from .errors import ApiError, BadRequest, NotFound

API_PATHS = ("/api/", "/workers/tick/")


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATHS)


def _with_slash(request: HttpRequest) -> str | None:
    """The path with a slash added when a real API route (not this fallback) serves it."""
    if request.path_info.endswith("/"):
        return None
    try:
        match = resolve(f"{request.path_info}/")
    except Resolver404:
        return None
    return None if match.func is unknown_path else f"{request.path}/"


@csrf_exempt  # answers every method the same, reads no body and changes nothing
def unknown_path(request: HttpRequest) -> JsonResponse:
    """Any path under /api/ that no route matches, e.g. ``/api/tasks/abc/``."""
    message = f"no API endpoint at {request.path!r}"
    better = _with_slash(request)
    if better:
        message += f": did you mean {better!r}?"
    return errors.response(NotFound(message))


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: e.g. a Host header not in ALLOWED_HOSTS, refused before any view."""
    if not is_api(request):
        return defaults.bad_request(request, exception)
    return errors.response(BadRequest("request", "was refused as malformed or suspicious"))


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the error itself is logged by Django; the client learns nothing of it."""
    if not is_api(request):
        return defaults.server_error(request)
    return errors.response(ServerError("internal server error: the error was logged"))


class ServerError(ApiError):
    status = 500
