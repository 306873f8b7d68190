"""Create the first admin account for a local console, once."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser with a random password if the console has no superuser yet."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--username", default="admin", help="Name of the account to create (default: admin)."
        )

    def handle(self, *args: object, username: str, **options: object) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An admin account exists. Forgot its password? "
                "Run: .venv/bin/python manage.py changepassword <username>"
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        # Shown once, on the terminal of whoever ran `make run`: the local login.
        self.stdout.write(
            self.style.SUCCESS(f"Created admin account: user {username!r}, password {password}")
        )
        self.stdout.write("Change it after logging in (top right: Change password).")
