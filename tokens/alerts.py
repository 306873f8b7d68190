"""Alerts to the admins when an org needs a human, and when it no longer does.

Every alert goes to the channels routed its type (services.alert_channels; e-mail to
ADMINS when none is configured), only after the transaction that changed the state
commits, and never carries a secret: org names, states, provider error codes and expiry
times.
"""

import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.core.mail import mail_admins
from django.db import DatabaseError, transaction

from .models import AlertChannel as AlertChannelRow
from .models import AlertType, ApiClient, Org

logger = logging.getLogger(__name__)

# Longest header value built from data: an org name is up to 200 characters, and a
# subject longer than a line of a mail client is cut there anyway.
HEADER_MAX_LENGTH = 200
# Unicode categories a header value must not carry: control characters (CR, LF, NUL,
# ...) and the line and paragraph separators some mail software treats as line breaks.
_HEADER_FORBIDDEN = frozenset({"Cc", "Zl", "Zp"})


def mail_header(text: str) -> str:
    """`text` as one safe header line: control characters as spaces, bounded length."""
    chars = (" " if unicodedata.category(char) in _HEADER_FORBIDDEN else char for char in text)
    line = " ".join("".join(chars).split())
    if len(line) > HEADER_MAX_LENGTH:
        line = line[: HEADER_MAX_LENGTH - 1].rstrip() + "…"
    return line


class Channel(Protocol):
    """Somewhere alerts reach a person (send_test_alert and the tokens.W010 check)."""

    name: str  # what the channel is, for people: "e-mail to ADMINS (ops@example.com)"

    def send(self, subject: str, body: str) -> str:
        """Deliver one alert; say how it went ("sent"); raise when it could not."""


# Django's e-mail backends that deliver nothing to anyone's mailbox.
_UNDELIVERED_MAIL = {
    "django.core.mail.backends.console.EmailBackend": "printed to the console",
    "django.core.mail.backends.filebased.EmailBackend": "written to EMAIL_FILE_PATH",
    "django.core.mail.backends.dummy.EmailBackend": "discarded",
}


@dataclass(frozen=True)
class AdminMail:
    """E-mail to ADMINS through the backend EMAIL_URL configures."""

    recipients: tuple[str, ...]

    @property
    def name(self) -> str:
        """The channel and its recipients."""
        return f"e-mail to ADMINS ({', '.join(self.recipients)})"

    def send(self, subject: str, body: str) -> str:
        """Mail the admins; a backend that delivers nothing (EMAIL_URL unset) says so."""
        mail_admins(subject, body, fail_silently=False)
        undelivered = _UNDELIVERED_MAIL.get(settings.EMAIL_BACKEND)
        return f"{undelivered}, not sent (set EMAIL_URL)" if undelivered else "sent"


@dataclass(frozen=True)
class ConfiguredChannel:
    """An alert channel configured in the admin (e-mail list or Webex space)."""

    row: AlertChannelRow

    @property
    def name(self) -> str:
        """The channel's kind and name."""
        return f"{self.row.get_kind_display()} {self.row.name!r}"

    def send(self, subject: str, body: str) -> str:
        """Deliver through the channel now; raise AlertChannelError when it fails."""
        from .services.alert_channels import alert_channel_send

        alert_channel_send(channel=self.row, subject=subject, body=body)
        undelivered = self.row.kind == self.row.Kind.EMAIL and _UNDELIVERED_MAIL.get(
            settings.EMAIL_BACKEND
        )
        return f"{undelivered}, not sent (set EMAIL_URL)" if undelivered else "sent"


def alert_channels() -> list[Channel]:
    """The channels alerts go to, as configured now; empty when alerts reach nobody.

    The enabled alert channels of the admin, or, with none, e-mail to ADMINS (what
    alert_route does then too). An e-mail channel without its own list mails ADMINS,
    so it reaches nobody while ADMINS is empty.
    """
    admins = tuple(entry if isinstance(entry, str) else entry[1] for entry in settings.ADMINS)
    try:
        rows = list(AlertChannelRow.objects.filter(enabled=True))
    except DatabaseError:  # not migrated yet (the system checks run first)
        rows = []
    if not rows:
        return [AdminMail(admins)] if admins else []
    return [
        ConfiguredChannel(row)
        for row in rows
        if admins or row.kind != row.Kind.EMAIL or row.email_recipients.split()
    ]


def _send_on_commit(alert_type: str, subject: str, body: str) -> None:
    # Every alert's subject comes from data (an org's name): a newline in it would make
    # Django refuse the whole mail with BadHeaderError, or add a header.
    subject = mail_header(subject)

    def send() -> None:
        from .services.alert_channels import alert_route

        try:
            alert_route(alert_type=alert_type, subject=subject, body=body)
        except Exception:  # a mail outage must not undo or fail a refresh
            logger.exception("alert failed subject=%r", subject)

    transaction.on_commit(send)


def alert_needs_reconnect(org: Org, *, reason: str) -> None:
    """The provider rejected the grant: an admin must press Reconnect."""
    _send_on_commit(
        AlertType.NEEDS_RECONNECT,
        f"{org.name} needs to be reconnected",
        f"The provider rejected the stored grant of {org.name} ({org.slug}).\n"
        f"Reason: {reason}\n\nOpen the org in the Token Console and press Reconnect.",
    )


def alert_encryption_key(org: Org, *, reason: str) -> None:
    """No configured key decrypts a secret the org's refresh needs: refreshes stopped."""
    _send_on_commit(
        AlertType.ENCRYPTION_KEY,
        f"{org.name} needs to be reconnected (encryption key)",
        f"The stored credentials of {org.name} ({org.slug}) cannot be decrypted with the "
        f"keys in FIELD_ENCRYPTION_KEYS, so its token is no longer refreshed.\n"
        f"Reason: {reason}",
    )


def alert_recovered(org: Org, *, how: str) -> None:
    """An org that needed attention is healthy again."""
    _send_on_commit(
        AlertType.RECOVERED,
        f"{org.name} has recovered",
        f"{org.name} ({org.slug}) holds a valid token again ({how}).",
    )


def alert_refresh_failing(org: Org, *, failures: int, error_code: str) -> None:
    """Refreshes keep failing for a transient reason (provider down, throttling)."""
    _send_on_commit(
        AlertType.REFRESH_FAILING,
        f"Token refresh failing for {org.name}",
        f"{failures} refreshes of {org.name} ({org.slug}) failed in a row "
        f"(last error: {error_code or 'no answer'}). The current token is kept and "
        "retries continue with backoff; you will get one more mail when it recovers.",
    )


def alert_refresh_token_expiring(org: Org, *, expires_at: datetime) -> None:
    """The refresh token runs out soon whatever we do: reconnect before then."""
    _send_on_commit(
        AlertType.REFRESH_TOKEN_EXPIRING,
        f"{org.name}: refresh token expires {expires_at:%Y-%m-%d}",
        f"The refresh token of {org.name} ({org.slug}) expires at "
        f"{expires_at:%Y-%m-%d %H:%M %Z}. Reconnect the org before then, or it will stop "
        "getting tokens.",
    )


def alert_webhook_disabled(client: ApiClient, *, url: str, reason: str) -> None:
    """A consumer's webhook kept failing and was disabled: its owner must look at it."""
    _send_on_commit(
        AlertType.WEBHOOK_DISABLED,
        f"Webhook of {client.name} disabled",
        f"The webhook of API client {client.name} ({url}) was disabled: {reason}\n"
        "Fix the receiver, then enable the webhook again in the Token Console.",
    )
