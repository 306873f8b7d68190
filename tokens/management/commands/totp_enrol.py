"""Enrol a TOTP authenticator for a staff user and show its key once."""

from base64 import b32encode

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tokens.exceptions import TwoFactorError
from tokens.twofactor import totp_device_enrol


class Command(BaseCommand):
    help = (
        "Create a confirmed TOTP device for a staff user and print its otpauth:// URL once "
        "(for REQUIRE_STAFF_2FA). Add it to an authenticator app; it is not shown again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="The staff user who gets the TOTP device.")
        parser.add_argument("--name", default="Authenticator app", help="The device's name.")

    def handle(self, *args: object, username: str, name: str, **options: object) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not (user.is_active and user.is_staff):
            raise CommandError(f"{username!r} is not active staff: only staff use the admin.")
        try:
            device = totp_device_enrol(user=user, name=name)
        except TwoFactorError as exc:
            raise CommandError(str(exc)) from exc
        # Shown once, on the terminal of whoever enrols: like a key, never logged.
        self.stdout.write(f"TOTP device {name!r} enrolled for {username!r}. Add it to the app:")
        self.stdout.write(f"  {device.config_url}")
        self.stdout.write(f"  key (manual entry): {b32encode(device.bin_key).decode()}")
        self.stdout.write("Keep neither: anyone holding them can produce this user's codes.")
