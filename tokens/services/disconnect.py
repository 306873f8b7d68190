"""Disconnecting an org: revoke the grant at the provider when it can, wipe the tokens."""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from tokens import clock, oauth
from tokens.conf import app_settings
from tokens.exceptions import (
    DisconnectInProgress,
    EncryptionKeyError,
    OrgNotConnected,
    OrgReconnected,
    ProviderError,
    RefreshInProgress,
)
from tokens.fields import SETTING
from tokens.models import Org, TokenEvent

from . import webhooks
from .events import token_event_record
from .refresh import Claim, claim_held
from .store import elapsed_ms, locked_org_and_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DisconnectResult:
    """What org_disconnect did. Holds no secret."""

    org_slug: str
    revoked: bool  # the provider confirmed the revocation
    message: str


@dataclass(frozen=True)
class _Held:
    version: int
    # None when no key decrypts the tokens or the client secret: nothing can be revoked.
    config: oauth.ClientConfig | None
    access_token: str = field(repr=False, default="")
    refresh_token: str = field(repr=False, default="")


def org_disconnect(
    *,
    org_id: int,
    actor: AbstractBaseUser | None = None,
    trigger: TokenEvent.Trigger = TokenEvent.Trigger.MANUAL,
) -> DisconnectResult:
    """Revoke the org's grant at the provider (when it has an endpoint), wipe its tokens,
    set it pending and record a `disconnected` event.

    The local part always happens: an unreachable provider, or tokens no key decrypts,
    are reported, not fatal. Raises OrgNotConnected when the org holds no token,
    RefreshInProgress while a refresh holds it (its rotated tokens would escape the
    revocation), DisconnectInProgress while another disconnect does, and OrgReconnected
    when a reconnect replaced the tokens during the revocation.
    """
    held = _hold(org_id)
    started = time.monotonic()
    revoked, note = _revoke(held)
    with transaction.atomic():
        org, token = locked_org_and_token(org_id)
        if token is not None and token.version != held.version:
            # Reconnected while we were at the provider: that new grant is not ours to wipe.
            raise OrgReconnected(
                f"{org.slug} was reconnected meanwhile; its new tokens are kept. {note}"
            )
        if token is not None:
            token.delete()
        if org.status != Org.Status.DISABLED:
            org.status = Org.Status.PENDING
        org.status_reason = ""
        org.connected_at, org.connected_by = None, None
        org.save(
            update_fields=["status", "status_reason", "connected_at", "connected_by", "updated_at"]
        )
        message = f"Disconnected: tokens wiped. {note}"
        token_event_record(
            org=org,
            kind=TokenEvent.Kind.DISCONNECTED,
            trigger=trigger,
            outcome=TokenEvent.Outcome.SUCCESS if revoked else TokenEvent.Outcome.WARNING,
            actor=actor,
            message=message,
            duration_ms=elapsed_ms(started),
        )
        webhooks.webhook_event_emit(event=webhooks.ORG_DISCONNECTED, org=org)
    logger.info("org disconnected org=%s revoked=%s", org.slug, revoked)
    return DisconnectResult(org_slug=org.slug, revoked=revoked, message=message)


def _hold(org_id: int) -> _Held:
    """Read the tokens and claim the org, so no refresh starts (and rotates them) meanwhile."""
    now = clock.now()
    with transaction.atomic():
        org, token = locked_org_and_token(org_id)
        if token is None:
            raise OrgNotConnected(f"{org.slug} holds no token: there is nothing to disconnect.")
        holder = claim_held(token, now=now)
        if holder == Claim.REFRESH:
            raise RefreshInProgress(
                f"A refresh of {org.slug} is in flight: disconnect again in a minute."
            )
        if holder == Claim.DISCONNECT:
            raise DisconnectInProgress(f"{org.slug} is being disconnected already.")
        # The lease outlasts one provider call (the revocation), as a refresh's does.
        token.refresh_claim = Claim.DISCONNECT
        token.refreshing_until = now + timedelta(seconds=app_settings.REFRESH_LEASE)
        token.save(update_fields=["refresh_claim", "refreshing_until"])
        # Revoke at the integration that issued the tokens, whatever the org names now.
        issuer = token.integration or org.integration
        try:  # the secrets are decrypted here, not when the rows were loaded
            return _Held(
                version=token.version,
                config=issuer.client_config(),
                access_token=token.access_token,
                refresh_token=token.refresh_token,
            )
        except EncryptionKeyError:
            return _Held(version=token.version, config=None)


def _revoke(held: _Held) -> tuple[bool, str]:
    """Ask the provider to revoke; return whether it did and a note for the event."""
    if held.config is None:
        return False, (
            f"No key in {SETTING} decrypts the org's tokens or its integration's client "
            "secret, so nothing was revoked at the provider: revoke the grant in the "
            "provider's admin."
        )
    if not held.config.revocation_url:
        return False, "The integration has no revocation endpoint: nothing was revoked."
    try:
        oauth.revoke(held.config, access_token=held.access_token, refresh_token=held.refresh_token)
    except ProviderError as exc:
        return False, (
            f"The provider did not confirm the revocation ({exc}); the grant may still be "
            "valid there: revoke it in the provider's admin."
        )
    return True, "The provider revoked the grant."
