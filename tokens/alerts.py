"""Alerts to the admins when an org needs a human, and when it no longer does.

Every alert goes to every configured channel (alert_channels: today e-mail to ADMINS),
only after the transaction that changed the state commits, and never carries a secret:
org names, states, provider error codes and expiry times.
"""

import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction

from .models import Org

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


class AlertChannel(Protocol):
    """Somewhere alerts reach a person."""

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


def alert_channels() -> list[AlertChannel]:
    """The channels alerts go to, as configured now; empty when alerts reach nobody."""
    channels: list[AlertChannel] = []
    recipients = tuple(entry if isinstance(entry, str) else entry[1] for entry in settings.ADMINS)
    if recipients:
        channels.append(AdminMail(recipients))
    return channels


def _send_on_commit(subject: str, body: str) -> None:
    # Every alert's subject comes from data (an org's name): a newline in it would make
    # Django refuse the whole mail with BadHeaderError, or add a header.
    subject = mail_header(subject)

    def send() -> None:
        for channel in alert_channels():
            try:
                channel.send(subject, body)
            except Exception:  # an outage of one channel must not undo or fail a refresh
                logger.exception("alert failed channel=%r subject=%r", channel.name, subject)

    transaction.on_commit(send)


def alert_needs_reconnect(org: Org, *, reason: str) -> None:
    """The provider rejected the grant: an admin must press Reconnect."""
    _send_on_commit(
        f"{org.name} needs to be reconnected",
        f"The provider rejected the stored grant of {org.name} ({org.slug}).\n"
        f"Reason: {reason}\n\nOpen the org in the Token Console and press Reconnect.",
    )


def alert_encryption_key(org: Org, *, reason: str) -> None:
    """No configured key decrypts a secret the org's refresh needs: refreshes stopped."""
    _send_on_commit(
        f"{org.name} needs to be reconnected (encryption key)",
        f"The stored credentials of {org.name} ({org.slug}) cannot be decrypted with the "
        f"keys in FIELD_ENCRYPTION_KEYS, so its token is no longer refreshed.\n"
        f"Reason: {reason}",
    )


def alert_recovered(org: Org, *, how: str) -> None:
    """An org that needed attention is healthy again."""
    _send_on_commit(
        f"{org.name} has recovered",
        f"{org.name} ({org.slug}) holds a valid token again ({how}).",
    )


def alert_refresh_failing(org: Org, *, failures: int, error_code: str) -> None:
    """Refreshes keep failing for a transient reason (provider down, throttling)."""
    _send_on_commit(
        f"Token refresh failing for {org.name}",
        f"{failures} refreshes of {org.name} ({org.slug}) failed in a row "
        f"(last error: {error_code or 'no answer'}). The current token is kept and "
        "retries continue with backoff; you will get one more mail when it recovers.",
    )


def alert_refresh_token_expiring(org: Org, *, expires_at: datetime) -> None:
    """The refresh token runs out soon whatever we do: reconnect before then."""
    _send_on_commit(
        f"{org.name}: refresh token expires {expires_at:%Y-%m-%d}",
        f"The refresh token of {org.name} ({org.slug}) expires at "
        f"{expires_at:%Y-%m-%d %H:%M %Z}. Reconnect the org before then, or it will stop "
        "getting tokens.",
    )
