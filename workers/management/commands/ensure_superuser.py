"""Create an admin account when none exists (used by `make run`)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Create the 'admin' superuser when no superuser exists yet."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password: str = settings.SUPERUSER_PASSWORD
        generated = not password
        password = password or secrets.token_urlsafe(12)
        with transaction.atomic():
            users.objects.create_superuser("admin", "admin@localhost", password)
        if generated:
            self.stdout.write(f"Created superuser 'admin' with password: {password}")
            self.stdout.write("(shown once; set DJANGO_SUPERUSER_PASSWORD to choose it)")
        else:
            self.stdout.write("Created superuser 'admin' (password from DJANGO_SUPERUSER_PASSWORD)")
