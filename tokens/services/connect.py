"""Connecting an org: exchange the authorization code and store the first tokens."""

import logging
import time
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from tokens import alerts, oauth
from tokens.exceptions import ConnectError, ProviderError
from tokens.models import Integration, Org, Token, TokenEvent, binding_conflict_message
from tokens.providers import decode_webex_org_id, parse_webex_access_token

from . import webhooks
from .events import acting_user, token_event_record
from .store import elapsed_ms, expiry_warning, locked_org_and_token, token_store_answer

logger = logging.getLogger(__name__)

Kind = TokenEvent.Kind
Outcome = TokenEvent.Outcome
Trigger = TokenEvent.Trigger


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says the tokens belong to."""

    org_id: str = ""
    cluster_id: str = ""
    # An inconsistency worth an error event (token suffix vs people/me), or "".
    mismatch: str = ""


def org_connect(
    *,
    org: Org,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    actor: AbstractBaseUser | None = None,
) -> Token:
    """Exchange an authorization code and store the org's new tokens.

    On any failure the org's current tokens stay as they are, a `connect_failed`
    event is recorded, and the error is raised again for the caller to present.
    """
    integration = org.integration
    config = integration.client_config()
    started = time.monotonic()
    try:
        # Disabled while the admin was at the provider: the code is not even exchanged.
        if Org.objects.filter(pk=org.pk, status=Org.Status.DISABLED).exists():
            raise ConnectError(
                f"{org} was disabled meanwhile: enable it, then connect again.",
                error_code="org_disabled",
            )
        answer = oauth.exchange_code(
            config, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        identity = _provider_identity(integration, config, answer.access_token)
        _check_org_binding(org, identity)
        token = _store_connection(org, answer, identity, actor=actor, started=started)
    except (ProviderError, ConnectError) as exc:
        _record_connect_failure(org, exc, actor=actor, started=started)
        raise
    org.refresh_from_db()
    logger.info(
        "org connected org=%s version=%s access_fp=%s",
        org.slug,
        token.version,
        token.access_fingerprint,
    )
    return token


def _store_connection(
    org: Org,
    answer: oauth.TokenResponse,
    identity: ProviderIdentity,
    *,
    actor: AbstractBaseUser | None,
    started: float,
) -> Token:
    """Store the first tokens and mark the org connected, with its events, in one transaction."""
    with transaction.atomic():
        locked, existing = locked_org_and_token(org.pk)
        if locked.status == Org.Status.DISABLED:  # disabled during the code exchange
            raise ConnectError(
                f"{org} was disabled meanwhile: enable it, then connect again.",
                error_code="org_disabled",
            )
        if locked.integration_id != org.integration_id:  # moved during the code exchange
            raise ConnectError(
                f"{org} was moved to another integration meanwhile: connect it again.",
                error_code="integration_changed",
            )
        locked.provider_org_id = identity.org_id or locked.provider_org_id
        _check_binding_unique(locked)
        was_needing_reconnect = locked.status == Org.Status.NEEDS_RECONNECT
        token = token_store_answer(
            locked, answer, existing=existing, integration_id=org.integration_id
        )
        locked.status = Org.Status.CONNECTED
        locked.status_reason = ""
        locked.cluster_id = identity.cluster_id or locked.cluster_id
        locked.connected_at = token.obtained_at
        locked.connected_by = acting_user(actor)
        locked.save()
        if identity.mismatch:
            token_event_record(
                org=locked, kind=Kind.ORG_MISMATCH, trigger=Trigger.CALLBACK,
                outcome=Outcome.FAILURE, actor=actor, token=token, message=identity.mismatch,
            )  # fmt: skip
        warning = expiry_warning(answer)
        token_event_record(
            org=locked, kind=Kind.CONNECTED, trigger=Trigger.CALLBACK,
            outcome=Outcome.WARNING if warning else Outcome.SUCCESS, actor=actor, token=token,
            message=warning, duration_ms=elapsed_ms(started),
        )  # fmt: skip
        if was_needing_reconnect:
            alerts.alert_recovered(locked, how="reconnected")
        webhooks.webhook_token_event_emit(event=webhooks.ORG_RECONNECTED, org=locked, token=token)
    return token


def org_connect_failed(
    *, org: Org, error_code: str, description: str, actor: AbstractBaseUser | None = None
) -> TokenEvent:
    """Record a connect flow the provider ended with an error (e.g. access_denied)."""
    error = ProviderError(
        f"The provider ended the sign-in with {error_code}.",
        error_code=error_code,
        description=description,
    )
    logger.warning("org connect refused org=%s error=%s", org.slug, error_code)
    return token_event_record(
        org=org,
        kind=Kind.CONNECT_FAILED,
        trigger=Trigger.CALLBACK,
        outcome=Outcome.FAILURE,
        actor=actor,
        error=error,
    )


def _provider_identity(
    integration: Integration, config: oauth.ClientConfig, access_token: str
) -> ProviderIdentity:
    """Read org and cluster from a Webex token suffix and check them against people/me."""
    if not integration.is_webex:
        return ProviderIdentity()
    suffix = parse_webex_access_token(access_token)
    identity = ProviderIdentity(
        org_id=suffix.org_id if suffix else "", cluster_id=suffix.cluster_id if suffix else ""
    )
    if not config.userinfo_url:
        return identity
    person = oauth.fetch_userinfo(config, access_token=access_token)
    userinfo_org = decode_webex_org_id(str(person.get("orgId") or ""))
    if not userinfo_org:
        return ProviderIdentity(
            org_id=identity.org_id,
            cluster_id=identity.cluster_id,
            mismatch="people/me returned no readable orgId.",
        )
    if identity.org_id and identity.org_id != userinfo_org:
        return ProviderIdentity(
            org_id=userinfo_org,
            cluster_id=identity.cluster_id,
            mismatch=(
                f"The access token names org {identity.org_id} but people/me says "
                f"{userinfo_org}; people/me is used."
            ),
        )
    return ProviderIdentity(org_id=userinfo_org, cluster_id=identity.cluster_id)


def _check_org_binding(org: Org, identity: ProviderIdentity) -> None:
    """Refuse a reconnect that signed in to a different provider org than the one bound."""
    if org.provider_org_id and identity.org_id and identity.org_id != org.provider_org_id:
        raise ConnectError(
            f"The sign-in belongs to provider org {identity.org_id}, but {org.slug} is bound "
            f"to {org.provider_org_id}. Sign in as an admin of that org, or clear the "
            "org's provider org id first to bind it to another one.",
            error_code="org_mismatch",
        )


def _check_binding_unique(org: Org) -> None:
    """Refuse to bind a second org of the integration to the same provider org.

    Call under the org's lock. The integration's row is locked too, so two of its orgs
    connecting to one provider org at the same time are checked one after the other
    (refreshes only update that row, after their own org locks: the order is the same).
    """
    Integration.objects.select_for_update(no_key=True).only("pk").get(pk=org.integration_id)
    other = org.bound_elsewhere()
    if other is not None:
        raise ConnectError(binding_conflict_message(org, other), error_code="org_conflict")


def _record_connect_failure(
    org: Org, exc: Exception, *, actor: AbstractBaseUser | None, started: float
) -> None:
    error = exc if isinstance(exc, ProviderError) else None
    code = exc.error_code
    logger.warning("org connect failed org=%s error=%s", org.slug, code or type(exc).__name__)
    token_event_record(
        org=org,
        kind=Kind.CONNECT_FAILED,
        trigger=Trigger.CALLBACK,
        outcome=Outcome.FAILURE,
        actor=actor,
        error=error,
        message=str(exc),
        error_code=code,
        duration_ms=elapsed_ms(started),
    )
