"""Writing a provider's token answer: shared by connect and refresh."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

from tokens import clock, oauth
from tokens.conf import app_settings
from tokens.models import Org, Token, fingerprint
from tokens.planning import plan_next_refresh

logger = logging.getLogger(__name__)
T = TypeVar("T")


def locked_org_and_token(
    org_id: int, *, with_integration: bool = False
) -> tuple[Org, Token | None]:
    """Lock an org's row, the mutex for its token, and read the token.

    Call inside a transaction. Every writer locks the Org first, then the Token,
    so two writers can never wait on each other in opposite order. With
    `with_integration` the org's integration is read in the same query, but only the
    org's row is locked (`of`): PostgreSQL would otherwise lock the joined integration
    row too, and every refresh of that integration would queue on it.
    """
    orgs = Org.objects.select_for_update(of=("self",))
    if with_integration:
        orgs = orgs.select_related("integration")
    org = orgs.get(pk=org_id)
    try:
        token = Token.objects.select_for_update().get(org_id=org_id)
    except Token.DoesNotExist:
        token = None
    return org, token


def token_store_answer(
    org: Org, answer: oauth.TokenResponse, *, existing: Token | None, integration_id: int
) -> Token:
    """Write a token answer over the org's Token (inside the caller's transaction).

    `integration_id` is the integration whose token endpoint gave the answer. Clears the
    refresh claim, the dispatch mark and the failure streak: the org now holds a fresh token.
    """
    now = clock.now()
    token = existing or Token(org=org, version=0)
    token.integration_id = integration_id
    lifetime = answer.expires_in or app_settings.DEFAULT_ACCESS_TOKEN_LIFETIME
    token.access_token = answer.access_token
    token.access_fingerprint = fingerprint(answer.access_token)
    token.token_type = answer.token_type
    token.scope = answer.scope or token.scope
    token.obtained_at = now
    token.access_expires_at = now + timedelta(seconds=lifetime)
    # A provider may omit refresh_token on refresh: keep the one we have, never blank it.
    if answer.refresh_token:
        # Compared by fingerprint, before the token is overwritten (`existing` is `token`),
        # and without decrypting the stored one, which a lost key may make unreadable.
        new_fingerprint = fingerprint(answer.refresh_token)
        rotated = existing is None or new_fingerprint != existing.refresh_fingerprint
        token.refresh_token = answer.refresh_token
        token.refresh_fingerprint = new_fingerprint
        if answer.refresh_token_expires_in:
            token.refresh_expires_at = now + timedelta(seconds=answer.refresh_token_expires_in)
        elif rotated:  # a new refresh token of unknown lifetime: the old expiry is not its
            token.refresh_expires_at = None
    token.next_refresh_at = (
        plan_next_refresh(obtained_at=now, access_expires_at=token.access_expires_at)
        if token.refresh_token
        else None
    )
    token.refresh_claim = ""
    token.refreshing_until = None
    token.dispatched_until = None
    token.failure_count = 0
    token.last_error_code = ""
    token.failing_alerted = False
    token.version += 1
    token.save()
    return token


def expiry_warning(answer: oauth.TokenResponse) -> str:
    """The warning to record: fields of the answer that were clamped or ignored, and an
    unknown expiry."""
    notes = list(answer.warnings)
    if not answer.expires_in:
        lifetime = app_settings.DEFAULT_ACCESS_TOKEN_LIFETIME
        notes.append(
            f"Assumed an access-token lifetime of {lifetime} s."
            if notes
            else f"The provider did not say when the access token expires; assumed {lifetime} s."
        )
    return " ".join(notes)


def elapsed_ms(started: float) -> int:
    """Milliseconds since a time.monotonic() reading."""
    return int((time.monotonic() - started) * 1000)


def durably(write: Callable[[], T]) -> T:
    """Run a write transaction; when the database connection drops, reconnect and retry.

    For the transaction that stores a provider's answer: the answer exists only in this
    process's memory, and a rotating provider will not hand it out again, so a dropped
    connection (a database restart or failover, a killed backend) must not lose it. The
    failed transaction was rolled back, so running it again is safe. Only errors of the
    connection are retried, and only when no outer transaction is open.
    """
    attempts = app_settings.STORE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or attempt == attempts:
                raise
            logger.warning(
                "database connection failed while storing (%s); retrying, attempt %s of %s",
                type(exc).__name__,
                attempt + 1,
                attempts,
            )
            connection.close()
            # Real time: the database, not the token, is waited for.
            time.sleep(app_settings.STORE_RETRY_DELAY * attempt)
    raise AssertionError("unreachable")
