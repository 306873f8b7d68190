"""Send one test alert through every configured alert channel and say how each went."""

import socket

from django.core.management.base import BaseCommand, CommandError

from tokens import clock
from tokens.alerts import alert_channels
from tokens.logs import redact

SUBJECT = "Test alert from the Token Console"


class Command(BaseCommand):
    help = (
        "Send one test alert through every configured channel (today: e-mail to ADMINS) "
        "and report each one's result. Exits 1 when one failed or none is configured."
    )

    def handle(self, *args: object, **options: object) -> None:
        channels = alert_channels()
        if not channels:
            raise CommandError(
                "No alert channel is configured, so alerts reach nobody: set ADMINS (for "
                "example ADMINS=ops@example.com) and EMAIL_URL, then run this again."
            )
        body = (
            f"This test alert was sent by `manage.py send_test_alert` on {socket.gethostname()} "
            f"at {clock.now():%Y-%m-%d %H:%M %Z}. If you read it, Token Console alerts "
            "(an org needs a reconnect, refreshes keep failing) reach you."
        )
        failed = 0
        for channel in channels:
            try:
                result = channel.send(SUBJECT, body)
            except Exception as exc:  # any failure of one channel is reported, not raised
                failed += 1
                # Mail servers' answers are echoed; redact() keeps a credential out of them.
                self.stderr.write(
                    f"{channel.name}: failed — {redact(f'{type(exc).__name__}: {exc}')}"
                )
            else:
                self.stdout.write(f"{channel.name}: {result}")
        if failed:
            raise CommandError(f"{failed} of {len(channels)} alert channels failed.")
