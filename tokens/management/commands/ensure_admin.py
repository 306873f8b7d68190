"""Create the first admin account for a local console, once, and say how to sign in."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

LABEL_WIDTH = 15  # the banner's labels line up their values


class Command(BaseCommand):
    # It ends the set-up, after migrate ran the checks: their warnings are printed once,
    # by runconsole as it starts, not here between the steps and the banner.
    requires_system_checks = []
    help = (
        "Create a superuser with a random password if the console has no superuser yet, "
        "then print how to sign in: the last lines of `make run`'s set-up."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--username", default="admin", help="Name of the account to create (default: admin)."
        )
        parser.add_argument(
            "--url", default="", help="The console's address, shown first (make passes PORT's)."
        )

    def handle(self, *args: object, username: str, url: str, **options: object) -> None:
        users = get_user_model()
        existing = users.objects.filter(is_superuser=True).order_by("pk").first()
        lines = [("Token Console", url)] if url else []
        if existing is not None:
            name = existing.get_username()
            lines.append(
                ("User", f"{name}  (exists already; forgot its password? Run: "
                 f".venv/bin/python manage.py changepassword {name})")
            )  # fmt: skip
        else:
            password = secrets.token_urlsafe(12)
            users.objects.create_superuser(username=username, email="", password=password)
            # Shown once, on the terminal of whoever ran `make run`: the local login.
            lines.append(("User", username))
            lines.append(("Password", f"{password}  (shown only now: change it after signing in)"))
        lines.append(("Settings", env_file_note()))
        for label, value in lines:
            self.stdout.write(f"{label:<{LABEL_WIDTH}}{value}")


def env_file_note() -> str:
    """Where the .env file is and why it must be kept, or that there is none."""
    env_file = Path(settings.ENV_FILE)
    if not env_file.exists():
        return "from the environment (no .env file)"
    indent = "\n" + " " * LABEL_WIDTH
    return (
        f"{env_file}{indent}Keep this file, private and backed up: it holds the keys that "
        f"decrypt{indent}every stored token. Without it every org must be connected again."
    )
