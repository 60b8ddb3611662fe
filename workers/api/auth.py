"""Who is calling the API and what they may do.

* Scripts send ``Authorization: Bearer <token>``. A valid token stands for its user; the
  request carries no cookies, so it is exempt from CSRF. A bad, revoked or inactive user's
  token is a 401, even when a session cookie is sent too (no silent fallback).
* Browsers use the admin session; every unsafe request must pass Django's CSRF check
  (the ``X-CSRFToken`` header). Other ``Authorization`` schemes (e.g. ``Basic`` added by a
  proxy in front of the site) are ignored, so the session still applies.
* Either way, only active staff users are let in, with the permission the operation names;
  superusers have them all.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware

from ..web import tokens
from .errors import Forbidden, NotAuthenticated

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, run for session requests only; keeps the reason of a refusal."""

    reason = ""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseForbidden:
        self.reason = reason
        return HttpResponseForbidden(reason)


def _unused(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


def _bearer_key(request: HttpRequest) -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def _check_csrf(request: HttpRequest) -> None:
    if request.method in SAFE_METHODS:
        return
    check = _CsrfCheck(_unused)
    check.process_request(request)
    if check.process_view(request, _unused, (), {}) is not None:
        logger.warning("CSRF refused on %s: %s", request.path, check.reason,
                       extra={"path": request.path, "reason": check.reason})
        raise Forbidden(f"CSRF check failed: {check.reason}", {"reason": check.reason})


def authenticate(request: HttpRequest, *, public: bool = False) -> None:
    """Settle ``request.user`` from a bearer token or the session; refuse who may not call."""
    key = _bearer_key(request)
    if key is not None:
        user = tokens.verify(key)
        if user is None:
            raise NotAuthenticated("invalid or revoked API token", invalid_token=True)
        request.user = user
        return
    if request.user.is_authenticated:
        _check_csrf(request)
    elif not public:
        raise NotAuthenticated(
            "authentication required: log in to the admin, or send Authorization: Bearer <token>"
        )


def authorize(user: User | AnonymousUser, permission: str) -> None:
    """Active staff with ``permission`` (``app_label.codename``) only; superusers pass."""
    if not (user.is_active and user.is_staff):
        raise Forbidden("only active staff users may use the API", {"permission": permission})
    if not user.has_perm(permission):
        raise Forbidden(f"needs the {permission} permission", {"permission": permission})
