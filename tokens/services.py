"""Everything that changes token state: connect (and, later, refresh and disconnect).

Views, admin actions, tasks and commands call these functions; nothing else writes
a Token. Each write happens in one transaction together with its TokenEvent.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from . import clock, oauth
from .conf import app_settings
from .exceptions import ConnectError, ProviderError
from .models import Integration, Org, Token, TokenEvent, fingerprint
from .planning import plan_next_refresh
from .providers import decode_webex_org_id, parse_webex_access_token

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
        actor=actor if actor is not None and actor.is_authenticated else None,
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
        answer = oauth.exchange_code(
            config, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        identity = _provider_identity(integration, config, answer.access_token)
        _check_org_binding(org, identity)
    except (ProviderError, ConnectError) as exc:
        _record_connect_failure(org, exc, actor=actor, started=started)
        raise
    with transaction.atomic():
        locked = Org.objects.select_for_update().get(pk=org.pk)
        token = _store_answer(locked, answer, existing=_current_token(locked))
        locked.status = Org.Status.CONNECTED
        locked.status_reason = ""
        locked.provider_org_id = identity.org_id or locked.provider_org_id
        locked.cluster_id = identity.cluster_id or locked.cluster_id
        locked.connected_at = token.obtained_at
        locked.connected_by = actor if actor is not None and actor.is_authenticated else None
        locked.save()
        if identity.mismatch:
            token_event_record(
                org=locked,
                kind=Kind.ORG_MISMATCH,
                trigger=Trigger.CALLBACK,
                outcome=Outcome.FAILURE,
                actor=actor,
                token=token,
                message=identity.mismatch,
            )
        token_event_record(
            org=locked,
            kind=Kind.CONNECTED,
            trigger=Trigger.CALLBACK,
            outcome=Outcome.SUCCESS,
            actor=actor,
            token=token,
            message=_expiry_warning(answer),
            duration_ms=_elapsed_ms(started),
        )
    org.refresh_from_db()
    logger.info(
        "org connected org=%s version=%s access_fp=%s",
        org.slug,
        token.version,
        token.access_fingerprint,
    )
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
            "org's provider org id first to bind it to another one."
        )


def _record_connect_failure(
    org: Org, exc: Exception, *, actor: AbstractBaseUser | None, started: float
) -> None:
    error = exc if isinstance(exc, ProviderError) else None
    code = error.error_code if error else "org_mismatch"
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
        duration_ms=_elapsed_ms(started),
    )


def _current_token(org: Org) -> Token | None:
    return Token.objects.select_for_update().filter(org=org).first()


def _store_answer(org: Org, answer: oauth.TokenResponse, *, existing: Token | None) -> Token:
    """Write a token answer over the org's Token (inside the caller's transaction)."""
    now = clock.now()
    token = existing or Token(org=org, version=0)
    lifetime = answer.expires_in or app_settings.DEFAULT_ACCESS_TOKEN_LIFETIME
    token.access_token = answer.access_token
    token.access_fingerprint = fingerprint(answer.access_token)
    token.token_type = answer.token_type
    token.scope = answer.scope or token.scope
    token.obtained_at = now
    token.access_expires_at = now + timedelta(seconds=lifetime)
    # A provider may omit refresh_token on refresh: keep the one we have, never blank it.
    if answer.refresh_token:
        token.refresh_token = answer.refresh_token
        token.refresh_fingerprint = fingerprint(answer.refresh_token)
        token.refresh_expires_at = (
            now + timedelta(seconds=answer.refresh_token_expires_in)
            if answer.refresh_token_expires_in
            else None
        )
    token.next_refresh_at = (
        plan_next_refresh(obtained_at=now, access_expires_at=token.access_expires_at)
        if token.refresh_token
        else None
    )
    token.version += 1
    token.save()
    return token


def _expiry_warning(answer: oauth.TokenResponse) -> str:
    if answer.expires_in:
        return ""
    return (
        "The provider did not say when the access token expires; assumed "
        f"{app_settings.DEFAULT_ACCESS_TOKEN_LIFETIME} s."
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
