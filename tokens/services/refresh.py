"""token_refresh: the one way any trigger refreshes an org's token.

Single flight without holding a database lock across the network call:
1. a short transaction locks the org, re-reads the token, checks it is still due,
   and claims it for REFRESH_LEASE seconds (a second caller sees the claim and
   waits or leaves);
2. the provider is called with no transaction open;
3. a second short transaction stores the answer, or the failure, with its event.

Holding a row lock through the HTTP call would do the same on PostgreSQL, but on
SQLite a write transaction locks the whole database: every refresh, callback and
admin save would queue behind provider latency. The lease outlasts the provider call
(connect timeout + total deadline, system check tokens.E005), so a refresh token is
never presented twice; a process killed mid-call leaves a claim that simply runs
out, and the next attempt starts from the token that is still stored.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from tokens import alerts, clock, oauth
from tokens.conf import app_settings
from tokens.exceptions import (
    AnswerNotStored,
    EncryptionKeyError,
    InvalidClient,
    InvalidGrant,
    OrgNotRefreshable,
    ProviderError,
)
from tokens.logs import log_event
from tokens.models import Integration, Org, Token, TokenEvent
from tokens.planning import retry_delay

from . import webhooks
from .events import token_event_record
from .store import (
    durably,
    elapsed_ms,
    expiry_warning,
    locked_org_and_token,
    token_store_answer,
)

# One `event=refresh` line per provider call, whatever came of it (docs/operations.md, "Logging").
logger = logging.getLogger("tokens.refresh")

Kind = TokenEvent.Kind
Outcome = TokenEvent.Outcome
Trigger = TokenEvent.Trigger


class RefreshOutcome(StrEnum):
    """What came of one call of token_refresh."""

    REFRESHED = "refreshed"
    NOT_DUE = "not_due"
    IN_PROGRESS = "in_progress"
    RETRY_SCHEDULED = "retry_scheduled"
    NEEDS_RECONNECT = "needs_reconnect"


# The longest status reason an org holds (its column's); a longer one is cut to fit.
REASON_MAX_LENGTH = Org._meta.get_field("status_reason").max_length

# Only in the log line: a reconnect replaced the token while the provider was asked (the
# caller is told NOT_DUE, the org holds a fresh token).
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class RefreshResult:
    """What one call of token_refresh did. Holds no secret."""

    org_slug: str
    outcome: RefreshOutcome
    message: str
    token_version: int | None = None
    next_refresh_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """The org holds a token that needs no attention now."""
        return self.outcome in (
            RefreshOutcome.REFRESHED,
            RefreshOutcome.NOT_DUE,
            RefreshOutcome.IN_PROGRESS,
        )


class Claim(StrEnum):
    """What holds a token's lease (refresh_claim until refreshing_until).

    One lease, so a refresh and a disconnect never overlap; the kind says which holds it.
    A refresh's claim is a random hex id, a disconnect's is the word below.
    """

    REFRESH = "refresh"
    DISCONNECT = "disconnect"


@dataclass(frozen=True)
class _Claim:
    org_id: int
    org_slug: str
    claim_id: str
    version: int
    integration_id: int
    config: oauth.ClientConfig
    refresh_token: str = field(repr=False)


def token_refresh(
    *,
    org_id: int,
    trigger: Trigger,
    actor: AbstractBaseUser | None = None,
    force: bool = False,
    wait: bool = False,
    expiring_within: timedelta | None = None,
) -> RefreshResult:
    """Refresh an org's access token if it is due (or `force`), at most one at a time.

    Due means the planned refresh time has come; with `expiring_within` (on-demand
    refresh by the API) it means the access token expires within that margin instead,
    and was not obtained within API_MIN_REFRESH_INTERVAL unless it has already expired.
    Raises OrgNotRefreshable, without calling the provider, when the org is not
    connected. With `wait`, a caller that finds a refresh in flight waits for it
    (up to REFRESH_WAIT seconds) and reports its result instead of leaving at once.
    """
    claim = _claim(
        org_id, force=force, expiring_within=expiring_within, trigger=trigger, actor=actor
    )
    if isinstance(claim, RefreshResult):
        if claim.outcome == "in_progress" and wait:
            return _wait_for_flight(org_id, version_before=claim.token_version)
        return claim
    context = {"trigger": trigger, "actor": actor, "started": time.monotonic()}
    try:
        answer = oauth.refresh(claim.config, refresh_token=claim.refresh_token)
    except ProviderError as error:
        return durably(partial(_store_failure, claim, error, **context))
    try:
        return durably(partial(_store_success, claim, answer, **context))
    except Exception as exc:  # the answer exists only here: never lose it silently
        logger.exception("storing the refresh answer of %s failed", claim.org_slug)
        return _salvage(claim, answer, exc, **context)


def _claim(
    org_id: int,
    *,
    force: bool,
    expiring_within: timedelta | None,
    trigger: Trigger,
    actor: AbstractBaseUser | None,
) -> _Claim | RefreshResult:
    """Transaction 1: check the org may and should refresh, then claim it."""
    now = clock.now()
    with transaction.atomic():
        org, token = locked_org_and_token(org_id, with_integration=True)
        if org.status != Org.Status.CONNECTED:
            raise OrgNotRefreshable(
                f"{org.slug} is {org.get_status_display().lower()}: nothing to refresh"
                + (" until it is reconnected." if org.status != Org.Status.DISABLED else ".")
            )
        no_refresh_token = OrgNotRefreshable(f"{org.slug} has no refresh token: reconnect it.")
        if token is None:
            raise no_refresh_token
        if token.integration_id is not None and token.integration_id != org.integration_id:
            # Never send the refresh token to a token URL that did not issue it.
            raise OrgNotRefreshable(
                f"{org.slug}'s token was obtained through another integration than the one "
                "it names now: disconnect it and connect it again."
            )
        try:  # the secrets are decrypted here, not when the rows were loaded
            refresh_token, config = token.refresh_token, org.integration.client_config()
        except EncryptionKeyError as error:
            return _mark_undecryptable(org, token, error, trigger=trigger, actor=actor)
        if not refresh_token:
            raise no_refresh_token
        holder = claim_held(token, now=now)
        if holder is not None:
            busy = "A disconnect is in progress." if holder == Claim.DISCONNECT else None
            message = busy or "Another refresh is in flight."
            return _result(org, token, RefreshOutcome.IN_PROGRESS, message)
        if not force and not _due(token, now=now, expiring_within=expiring_within):
            return _result(org, token, RefreshOutcome.NOT_DUE, "Not due yet.")
        token.refresh_claim = uuid.uuid4().hex
        token.refreshing_until = now + timedelta(seconds=app_settings.REFRESH_LEASE)
        token.save(update_fields=["refresh_claim", "refreshing_until"])
        return _Claim(
            org_id=org.pk,
            org_slug=org.slug,
            claim_id=token.refresh_claim,
            version=token.version,
            integration_id=org.integration_id,
            config=config,
            refresh_token=refresh_token,
        )


def _mark_undecryptable(
    org: Org,
    token: Token,
    error: EncryptionKeyError,
    *,
    trigger: Trigger,
    actor: AbstractBaseUser | None,
) -> RefreshResult:
    """No key decrypts the org's refresh token or client secret: stop and ask a human, once.

    Inside transaction 1, with the org locked. Only this org stops; the token row is
    saved without reading its secrets, so its ciphertext stays as it was.
    """
    reason = (
        f"{error.error_code}: {error} If that key is lost, reconnect the org "
        "(enter the integration's client secret again first if that is the value named)."
    )[:REASON_MAX_LENGTH]
    token.next_refresh_at = None
    token.refresh_claim, token.refreshing_until, token.dispatched_until = "", None, None
    token.last_failure_at, token.last_error_code = clock.now(), error.error_code
    token.save()
    org.status = Org.Status.NEEDS_RECONNECT
    org.status_reason = reason
    org.save(update_fields=["status", "status_reason", "updated_at"])
    token_event_record(
        org=org, kind=Kind.REFRESH_FAILED, trigger=trigger, outcome=Outcome.FAILURE,
        actor=actor, token=token, message=str(error), error_code=error.error_code,
    )  # fmt: skip
    alerts.alert_encryption_key(org, reason=reason)
    webhooks.webhook_event_emit(
        event=webhooks.ORG_NEEDS_RECONNECT, org=org, data={"reason": error.error_code}
    )
    log_event(
        logger, logging.WARNING, "refresh", org=org.slug, trigger=trigger,
        outcome=RefreshOutcome.NEEDS_RECONNECT, error=error.error_code, version=token.version,
    )  # fmt: skip
    return _result(org, token, RefreshOutcome.NEEDS_RECONNECT, reason)


def in_flight(token: Token, *, now: datetime) -> bool:
    """Whether a refresh or a disconnect holds the token's lease now.

    A lease ending further ahead than REFRESH_LEASE (plus the clock skew allowed between
    machines) cannot have been taken by these clocks: the clock jumped back since. It is
    ignored, or the org would wait out the jump.
    """
    longest = app_settings.REFRESH_LEASE + app_settings.CLOCK_SKEW_TOLERANCE
    until = token.refreshing_until
    return until is not None and now < until <= now + timedelta(seconds=longest)


def claim_held(token: Token, *, now: datetime) -> Claim | None:
    """Which kind of work holds the token's lease now; None when it is free."""
    if not in_flight(token, now=now):
        return None
    return Claim.DISCONNECT if token.refresh_claim == Claim.DISCONNECT else Claim.REFRESH


def _due(token: Token, *, now: datetime, expiring_within: timedelta | None) -> bool:
    """Whether the token should be refreshed now (see token_refresh)."""
    planned = token.next_refresh_at is not None and token.next_refresh_at <= now
    if expiring_within is None:
        return planned
    # On demand, a token about to expire is refreshed early, but never ahead of a
    # planned retry: callers in a provider outage must not hammer it ...
    backing_off = token.failure_count > 0 and not planned
    # ... nor more than once per API_MIN_REFRESH_INTERVAL while it is still valid: tokens
    # that live shorter than the margin would otherwise be refreshed on every call.
    interval = timedelta(seconds=app_settings.API_MIN_REFRESH_INTERVAL)
    too_soon = token.obtained_at > now - interval and token.access_expires_at > now
    return token.access_expires_at <= now + expiring_within and not backing_off and not too_soon


def _store_success(
    claim: _Claim,
    answer: oauth.TokenResponse,
    *,
    trigger: Trigger,
    actor: AbstractBaseUser | None,
    started: float,
) -> RefreshResult:
    """Transaction 2 after a good answer: store it and its event together."""
    with transaction.atomic():
        org, token = locked_org_and_token(claim.org_id)
        if token is None or token.version != claim.version:
            # A reconnect replaced the token while we were away: it wins.
            _log_attempt(claim, trigger, SUPERSEDED, started, status=200)
            return _result(org, token, RefreshOutcome.NOT_DUE, "The token was replaced meanwhile.")
        recovered = token.failing_alerted
        token = token_store_answer(org, answer, existing=token, integration_id=claim.integration_id)
        warning = expiry_warning(answer)
        token_event_record(
            org=org,
            kind=Kind.REFRESHED,
            trigger=trigger,
            outcome=Outcome.WARNING if warning else Outcome.SUCCESS,
            actor=actor,
            token=token,
            message=warning,
            duration_ms=elapsed_ms(started),
        )
        if recovered:
            alerts.alert_recovered(org, how="refresh succeeded")
        webhooks.webhook_token_event_emit(event=webhooks.TOKEN_REFRESHED, org=org, token=token)
    # oauth.refresh accepts nothing but a 200 from the token endpoint.
    _log_attempt(claim, trigger, RefreshOutcome.REFRESHED, started, status=200, token=token)
    return _result(org, token, RefreshOutcome.REFRESHED, f"Refreshed to version {token.version}.")


def _store_failure(
    claim: _Claim,
    error: ProviderError,
    *,
    trigger: Trigger,
    actor: AbstractBaseUser | None,
    started: float,
) -> RefreshResult:
    """Transaction 2 after a failure: keep the token, plan what comes next, record it.

    Only InvalidGrant and InvalidClient are permanent (a human must reconnect or fix the
    integration). Everything else — network trouble, 5xx, 429, an unusable answer, an
    unexpected 4xx — keeps the token and is retried with backoff; after
    FAILURE_ALERT_AFTER failures in a row the admins are mailed once.
    """
    now = clock.now()
    with transaction.atomic():
        org, token = locked_org_and_token(claim.org_id)
        if token is None or token.version != claim.version:
            _log_attempt(claim, trigger, SUPERSEDED, started, error=error)
            return _result(org, token, RefreshOutcome.NOT_DUE, "The token was replaced meanwhile.")
        token.refresh_claim, token.refreshing_until, token.dispatched_until = "", None, None
        token.last_failure_at, token.last_error_code = now, error.error_code
        if isinstance(error, (InvalidGrant, InvalidClient)):
            outcome = _mark_needs_reconnect(org, token, error)
        else:
            outcome = _schedule_retry(org, token, error, now=now)
        token.save()
        token_event_record(
            org=org,
            kind=Kind.REFRESH_FAILED,
            trigger=trigger,
            outcome=Outcome.FAILURE,
            actor=actor,
            token=token,
            error=error,
            duration_ms=elapsed_ms(started),
        )
    _log_attempt(claim, trigger, outcome, started, error=error, token=token)
    return _result(org, token, outcome, str(error))


def _salvage(
    claim: _Claim, answer: oauth.TokenResponse, exc: Exception, **context: object
) -> RefreshResult:
    """Storing a good answer failed: store its tokens alone, or at least record the failure.

    Either way an event is written and a retry planned. With a provider that rotates
    refresh tokens, the old one is already spent: the new tokens are what matters.
    """
    essentials = oauth.TokenResponse(
        access_token=answer.access_token, token_type="Bearer", refresh_token=answer.refresh_token
    )
    kept = AnswerNotStored(
        f"The provider's answer could not be stored as given ({type(exc).__name__}): its "
        "tokens were kept with default expiry and scope, and an early refresh is planned.",
        error_code="store_failed",
        http_status=200,
    )
    try:
        return durably(partial(_store_salvaged, claim, essentials, kept, **context))
    except Exception:
        logger.exception("storing the tokens alone for %s failed too", claim.org_slug)
    lost = AnswerNotStored(
        f"The provider's answer could not be stored ({type(exc).__name__}): a retry is "
        "planned. If the provider rotates refresh tokens, the org may need a reconnect.",
        error_code="store_failed",
        http_status=200,
    )
    return durably(partial(_store_failure, claim, lost, **context))


def _store_salvaged(
    claim: _Claim,
    answer: oauth.TokenResponse,
    error: AnswerNotStored,
    *,
    trigger: Trigger,
    actor: AbstractBaseUser | None,
    started: float,
) -> RefreshResult:
    """Transaction 2 again with the tokens alone; the failure streak goes on, with a retry."""
    now = clock.now()
    with transaction.atomic():
        org, token = locked_org_and_token(claim.org_id)
        if token is None or token.version != claim.version:
            _log_attempt(claim, trigger, SUPERSEDED, started, error=error)
            return _result(org, token, RefreshOutcome.NOT_DUE, "The token was replaced meanwhile.")
        streak = (token.failure_count, token.failing_alerted)
        token = token_store_answer(org, answer, existing=token, integration_id=claim.integration_id)
        token.failure_count, token.failing_alerted = streak
        token.last_failure_at, token.last_error_code = now, error.error_code
        _schedule_retry(org, token, error, now=now)
        token.save()
        token_event_record(
            org=org,
            kind=Kind.REFRESHED,
            trigger=trigger,
            outcome=Outcome.WARNING,
            actor=actor,
            token=token,
            error=error,
            duration_ms=elapsed_ms(started),
        )
    _log_attempt(claim, trigger, RefreshOutcome.REFRESHED, started, status=200, token=token)
    return _result(org, token, RefreshOutcome.REFRESHED, str(error))


def _log_attempt(
    claim: _Claim,
    trigger: Trigger,
    outcome: RefreshOutcome | str,
    started: float,
    *,
    status: int | None = None,
    error: ProviderError | None = None,
    token: Token | None = None,
) -> None:
    """The attempt's one log line: INFO when it refreshed, WARNING otherwise. No secret."""
    log_event(
        logger,
        logging.INFO if outcome == RefreshOutcome.REFRESHED else logging.WARNING,
        "refresh",
        org=claim.org_slug,
        trigger=trigger,
        outcome=outcome,
        duration_ms=elapsed_ms(started),
        status=error.http_status if error else status,
        error=(error.error_code or type(error).__name__) if error else None,
        fingerprint=token.access_fingerprint if token and not error else None,
        version=token.version if token else claim.version,
        failures=token.failure_count if token else None,
    )


def _mark_needs_reconnect(org: Org, token: Token, error: ProviderError) -> RefreshOutcome:
    """A permanent failure: stop retrying and ask a human, once."""
    reason = f"{error.error_code}: {error.description}".strip(": ")
    token.next_refresh_at = None
    org.status = Org.Status.NEEDS_RECONNECT
    org.status_reason = reason[:REASON_MAX_LENGTH]
    org.save(update_fields=["status", "status_reason", "updated_at"])
    alerts.alert_needs_reconnect(org, reason=reason)
    webhooks.webhook_event_emit(
        event=webhooks.ORG_NEEDS_RECONNECT, org=org, data={"reason": error.error_code}
    )
    return RefreshOutcome.NEEDS_RECONNECT


def _schedule_retry(
    org: Org, token: Token, error: ProviderError, *, now: datetime
) -> RefreshOutcome:
    """A transient failure: keep the token, back off, and slow the integration on 429."""
    token.failure_count += 1
    delay = retry_delay(failures=token.failure_count, retry_after=error.retry_after)
    token.next_refresh_at = now + delay
    if error.http_status == 429:
        Integration.objects.filter(pk=org.integration_id).update(throttled_until=now + delay)
    if token.failure_count >= app_settings.FAILURE_ALERT_AFTER and not token.failing_alerted:
        token.failing_alerted = True
        alerts.alert_refresh_failing(
            org, failures=token.failure_count, error_code=error.error_code or str(error)
        )
    return RefreshOutcome.RETRY_SCHEDULED


def _wait_for_flight(org_id: int, *, version_before: int | None) -> RefreshResult:
    """Wait (bounded, in real time) for another caller's refresh and report how it ended."""
    deadline = time.monotonic() + app_settings.REFRESH_WAIT
    while True:
        # Real time: another thread or process is waited for, not simulated time.
        time.sleep(app_settings.REFRESH_WAIT_POLL_INTERVAL)
        token = Token.objects.select_related("org").filter(org_id=org_id).first()
        if token is None:  # disconnected meanwhile
            org = Org.objects.get(pk=org_id)
            return _result(
                org, None, RefreshOutcome.NEEDS_RECONNECT, f"{org.slug} was disconnected."
            )
        flying = in_flight(token, now=clock.now())
        if not flying or time.monotonic() >= deadline:
            break
    if token.version != version_before:
        return _result(
            token.org, token, RefreshOutcome.REFRESHED, "Refreshed by a concurrent request."
        )
    if flying:
        return _result(
            token.org, token, RefreshOutcome.IN_PROGRESS, "Another refresh is still in flight."
        )
    if token.org.status == Org.Status.NEEDS_RECONNECT:
        return _result(token.org, token, RefreshOutcome.NEEDS_RECONNECT, token.org.status_reason)
    return _result(
        token.org, token, RefreshOutcome.RETRY_SCHEDULED, "The concurrent refresh failed."
    )


def _result(org: Org, token: Token | None, outcome: RefreshOutcome, message: str) -> RefreshResult:
    return RefreshResult(
        org_slug=org.slug,
        outcome=outcome,
        message=message,
        token_version=token.version if token else None,
        next_refresh_at=token.next_refresh_at if token else None,
    )
