"""API tokens for scripts: shown once when made, stored only as a SHA-256, revocable."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from ..exceptions import CrucibleError
from ..models import ApiToken

logger = logging.getLogger(__name__)

PREFIX_LENGTH = 8
MAX_KEY_LENGTH = 200
# last_used_at is refreshed at most this often, so a busy script does not write every request.
TOUCH_EVERY = timedelta(seconds=60)


class TokenNotFound(CrucibleError):
    """No active token matches."""


class AmbiguousToken(CrucibleError):
    """More than one active token matches a prefix."""


@dataclass(frozen=True, slots=True)
class NewToken:
    token: ApiToken
    key: str  # the secret itself: shown once, never stored


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(user: User, name: str = "") -> NewToken:
    key = secrets.token_urlsafe(32)
    while key.startswith("-"):  # a leading dash would read as an option: `--revoke -x...`
        key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=hash_key(key), prefix=key[:PREFIX_LENGTH]
    )
    logger.info("API token %s created for %s", token.prefix, user,
                extra={"token": token.prefix, "user": user.pk})
    return NewToken(token=token, key=key)


def verify(key: str) -> User | None:
    """The active user a live token belongs to, or None; records when it was last used."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_key(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    _touch(token)
    return token.user


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


def revoke(prefix_or_key: str) -> ApiToken:
    """Revoke the one active token with this prefix (or this whole key, e.g. a leaked one)."""
    matches = ApiToken.objects.filter(
        prefix=prefix_or_key[:PREFIX_LENGTH], revoked_at__isnull=True
    ).select_related("user")
    if len(prefix_or_key) > PREFIX_LENGTH:
        matches = matches.filter(key_hash=hash_key(prefix_or_key))
    found = list(matches[:2])
    if not found:
        raise TokenNotFound(f"no active token starts with {prefix_or_key[:PREFIX_LENGTH]!r}")
    if len(found) > 1:
        raise AmbiguousToken(
            f"several active tokens start with {prefix_or_key!r}: pass the whole token"
        )
    token = found[0]
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    logger.info("API token %s of %s revoked", token.prefix, token.user,
                extra={"token": token.prefix, "user": token.user_id})
    return token
