"""python manage.py createapitoken USERNAME | --revoke PREFIX | --list: API tokens for scripts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.exceptions import CrucibleError
from workers.models import ApiToken
from workers.web import tokens


def _when(token: ApiToken) -> str:
    used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
    return f"created {token.created_at:%Y-%m-%d %H:%M}, last used {used}"


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print it once; revoke one with --revoke "
        "PREFIX (or the whole token); list them with --list."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", metavar="USERNAME",
                            help="The active staff user the token acts as.")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'sweeps'.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--revoke", metavar="PREFIX",
                            help="Revoke the token with this 8-character prefix (or this token).")
        action.add_argument("--list", action="store_true",
                            help="List tokens (of USERNAME when given).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            if options["username"]:
                raise CommandError("--revoke takes a token prefix, not a USERNAME")
            self.revoke(options["revoke"])
        elif options["list"]:
            self.list(options["username"])
        elif options["username"]:
            self.create(options["username"], options["name"])
        else:
            raise CommandError("give a USERNAME, --revoke PREFIX or --list")

    def create(self, username: str, name: str) -> None:
        users = get_user_model()
        user = users.objects.filter(**{users.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if not (user.is_active and user.is_staff):
            raise CommandError(
                f"{username!r} is not an active staff user: the API only accepts those"
            )
        made = tokens.create(user, name[:100])
        self.stdout.write(made.key)
        self.stderr.write(
            f"Token {made.token.prefix}... for {username}: store it now, it is not shown again."
        )

    def revoke(self, prefix: str) -> None:
        try:
            token = tokens.revoke(prefix)
        except CrucibleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"revoked token {token.prefix}... of {token.user}")

    def list(self, username: str | None) -> None:
        rows = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
        if username:
            rows = rows.filter(user__username=username)
        for token in rows:
            state = "revoked" if token.revoked_at else "active"
            self.stdout.write(
                f"{token.prefix}  {token.user.username:<20} {state:<8} {_when(token)}"
                f"  {token.name}"
            )
