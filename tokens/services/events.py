"""The token history: every service records what it did through token_event_record."""

from django.contrib.auth.base_user import AbstractBaseUser

from tokens import clock
from tokens.exceptions import ProviderError
from tokens.models import Org, Token, TokenEvent


def acting_user(actor: AbstractBaseUser | None) -> AbstractBaseUser | None:
    """The user to store as the actor: None for no user or an anonymous one."""
    return actor if actor is not None and actor.is_authenticated else None


def token_event_record(
    *,
    org: Org | None,
    kind: str,
    trigger: str,
    outcome: str,
    actor: AbstractBaseUser | None = None,
    token: Token | None = None,
    error: ProviderError | None = None,
    message: str = "",
    error_code: str = "",
    duration_ms: int | None = None,
) -> TokenEvent:
    """Append one line to the token history. Only fingerprints and expiries are kept."""
    event = TokenEvent(
        org=org,
        org_slug=org.slug if org else "",
        kind=kind,
        trigger=trigger,
        outcome=outcome,
        actor=acting_user(actor),
        created_at=clock.now(),
        message=(message or (str(error) if error else ""))[:500],
        error_code=error_code,
        duration_ms=duration_ms,
    )
    if error is not None:
        event.http_status = error.http_status
        event.error_code = error_code or error.error_code
        if error.description:
            event.message = f"{event.message} Provider said: {error.description}"[:500]
    if token is not None:
        event.access_expires_at = token.access_expires_at
        event.refresh_expires_at = token.refresh_expires_at
        event.access_fingerprint = token.access_fingerprint
        event.refresh_fingerprint = token.refresh_fingerprint
        event.token_version = token.version
    event.save()
    return event
