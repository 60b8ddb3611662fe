"""API tokens: made once and shown once, stored hashed, verified, revoked; the command."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from workers.models import ApiToken
from workers.web import tokens
from workers.web.tokens import AmbiguousToken, TokenNotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("ops", is_staff=True)


def test_only_the_hash_and_a_prefix_are_stored(staff):
    made = tokens.create(staff, "sweeps")

    row = ApiToken.objects.get()
    assert row.key_hash == hashlib.sha256(made.key.encode()).hexdigest()
    assert row.prefix == made.key[:8]
    assert made.key not in {row.key_hash, row.prefix, row.name}
    assert (row.user, row.name) == (staff, "sweeps")
    assert len(made.key) >= 40


def test_a_live_token_gives_its_user(staff):
    made = tokens.create(staff)

    assert tokens.verify(made.key) == staff


@pytest.mark.parametrize("key", ["", "x", "Bearer", "a" * 5000])
def test_unknown_keys_give_nobody(staff, key):
    tokens.create(staff)

    assert tokens.verify(key) is None


def test_a_revoked_token_or_an_inactive_user_gives_nobody(staff):
    revoked, kept = tokens.create(staff), tokens.create(staff)
    tokens.revoke(revoked.token.prefix)
    assert tokens.verify(revoked.key) is None
    assert tokens.verify(kept.key) == staff

    staff.is_active = False
    staff.save()

    assert tokens.verify(kept.key) is None


def test_last_used_is_recorded_at_most_once_a_minute(staff, django_assert_num_queries):
    made = tokens.create(staff)
    with django_assert_num_queries(2):  # read, then record the first use
        tokens.verify(made.key)
    first = ApiToken.objects.get().last_used_at
    assert first is not None

    with django_assert_num_queries(1):  # read only
        tokens.verify(made.key)

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    tokens.verify(made.key)
    latest = ApiToken.objects.get().last_used_at
    assert latest is not None and latest > first


def test_revoke_by_the_whole_key_for_a_leaked_token(staff):
    made = tokens.create(staff)

    assert tokens.revoke(made.key).pk == made.token.pk
    assert ApiToken.objects.get().revoked_at is not None


def test_revoke_refuses_an_unknown_or_already_revoked_token(staff):
    made = tokens.create(staff)
    tokens.revoke(made.token.prefix)

    with pytest.raises(TokenNotFound):
        tokens.revoke(made.token.prefix)
    with pytest.raises(TokenNotFound):
        tokens.revoke(made.token.prefix + "not-the-rest")


def test_revoke_refuses_an_ambiguous_prefix(staff):
    for key in ("samepref-one", "samepref-two"):
        ApiToken.objects.create(user=staff, key_hash=tokens.hash_key(key), prefix=key[:8])

    with pytest.raises(AmbiguousToken):
        tokens.revoke("samepref")
    assert tokens.revoke("samepref-two").key_hash == tokens.hash_key("samepref-two")


# --- manage.py createapitoken ---


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("createapitoken", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_prints_the_token_once_and_alone(staff):
    out, err = run("ops", "--name", "nightly sweeps")

    key = out.strip()
    assert tokens.verify(key) == staff
    assert ApiToken.objects.get().name == "nightly sweeps"
    assert key not in err and "not shown again" in err


@pytest.mark.parametrize(("flags", "message"), [
    ({"is_staff": False}, "not an active staff user"),
    ({"is_active": False}, "not an active staff user"),
])
def test_the_command_refuses_users_the_api_would_refuse(flags, message):
    User.objects.create_user("guest", **flags)

    with pytest.raises(CommandError, match=message):
        run("guest")
    assert ApiToken.objects.count() == 0


@pytest.mark.parametrize(("args", "message"), [
    (("nobody",), "no user 'nobody'"),
    ((), "give a USERNAME"),
    (("ops", "--revoke", "abcdefgh"), "not a USERNAME"),
    (("--revoke", "abcdefgh"), "no active token"),
])
def test_the_command_refuses_bad_arguments(staff, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_the_command_revokes_and_lists(staff):
    key = run("ops", "--name", "ci")[0].strip()
    run("ops")

    out, _ = run("--revoke", key[:8])
    assert out.strip() == f"revoked token {key[:8]}... of ops"

    listing = run("--list")[0].splitlines()
    assert len(listing) == 2
    assert any(line.startswith(key[:8]) and "revoked" in line and "ci" in line
               for line in listing)
    assert run("--list", "someone-else")[0] == ""
