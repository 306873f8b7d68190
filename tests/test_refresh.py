"""token_refresh against the fake provider: when it refreshes, what it keeps, how it fails."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import DatabaseError
from django.test import TestCase

from tokens import services
from tokens.exceptions import OrgNotRefreshable
from tokens.models import Integration, Org, Token, TokenEvent
from tokens.services import refresh as refresh_service

pytestmark = pytest.mark.django_db


def make_due(org: Org, clock) -> Token:
    """Move the clock to the org's planned refresh time."""
    token = Token.objects.get(org=org)
    clock.current = token.next_refresh_at + timedelta(seconds=1)
    return token


def refresh(org: Org, **kwargs: object) -> services.RefreshResult:
    """Refresh as the schedule does; on-commit work (alert mail) runs as after a real commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.token_refresh(org_id=org.pk, trigger="schedule", **kwargs)


def last_event(org: Org) -> TokenEvent:
    return TokenEvent.objects.filter(org=org).first()


def test_due_refresh_stores_the_new_token_and_records_it(frozen_clock, connected_org, provider):
    before = make_due(connected_org, frozen_clock)
    result = refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert result.outcome == "refreshed"
    assert after.version == before.version + 1
    assert after.access_token != before.access_token
    assert provider.is_access_token_valid(after.access_token)
    assert after.obtained_at == frozen_clock.current
    assert after.next_refresh_at > frozen_clock.current
    assert (after.refresh_claim, after.refreshing_until) == ("", None)
    event = last_event(connected_org)
    assert (event.kind, event.trigger, event.outcome) == ("refreshed", "schedule", "success")
    assert event.access_fingerprint == after.access_fingerprint
    assert event.token_version == after.version


def test_not_due_token_is_left_alone_without_a_provider_call(connected_org, provider):
    provider.reset_records()
    result = refresh(connected_org)
    assert result.outcome == "not_due"
    assert provider.token_calls == []
    assert Token.objects.get(org=connected_org).version == 1


def test_force_refreshes_a_token_that_is_not_due(connected_org, provider):
    result = refresh(connected_org, force=True)
    assert result.outcome == "refreshed"
    assert Token.objects.get(org=connected_org).version == 2


def test_missing_expires_in_assumes_the_default_and_records_a_warning(
    frozen_clock, connected_org, provider
):
    make_due(connected_org, frozen_clock)
    provider.include_expires_in = False
    refresh(connected_org)
    token = Token.objects.get(org=connected_org)
    assert token.access_expires_at == frozen_clock.current + timedelta(seconds=3600)
    event = last_event(connected_org)
    assert (event.kind, event.outcome) == ("refreshed", "warning")
    assert "did not say when the access token expires" in event.message


def test_missing_refresh_token_in_the_answer_keeps_the_old_one(
    frozen_clock, connected_org, provider
):
    before = make_due(connected_org, frozen_clock)
    provider.include_refresh_token = False
    refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert after.refresh_token == before.refresh_token
    assert after.refresh_fingerprint == before.refresh_fingerprint
    assert after.access_token != before.access_token
    assert after.refresh_expires_at == before.refresh_expires_at


@pytest.mark.parametrize(
    "retry_after",
    ["100000000000000", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"],
)
def test_a_huge_retry_after_waits_retry_after_max_and_neither_overflows_nor_stalls(
    frozen_clock, connected_org, provider, retry_after
):
    before = make_due(connected_org, frozen_clock)
    provider.fail_next("429", retry_after=retry_after)
    result = refresh(connected_org)
    assert result.outcome == "retry_scheduled"
    after = Token.objects.get(org=connected_org)
    assert (after.access_token, after.version) == (before.access_token, before.version)
    one_day = timedelta(seconds=24 * 3600)  # RETRY_AFTER_MAX
    assert after.next_refresh_at - frozen_clock.current == one_day
    integration = Integration.objects.get(pk=connected_org.integration_id)
    assert integration.throttled_until - frozen_clock.current == one_day


@pytest.mark.parametrize(
    ("fault", "retry_after", "status"),
    [
        ("500", None, 500),
        ("502", None, 502),
        ("timeout", None, None),
        ("reset", None, None),
        ("429", None, 429),
        ("429", 900, 429),
        ("html", None, 200),
        ("no_access_token", None, 200),
    ],
)
def test_transient_fault_keeps_the_token_and_schedules_a_retry(
    frozen_clock, connected_org, provider, fault, retry_after, status
):
    before = make_due(connected_org, frozen_clock)
    provider.hang_seconds = 3.0
    provider.fail_next(fault, retry_after=retry_after)
    result = refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert result.outcome == "retry_scheduled"
    assert (after.access_token, after.refresh_token, after.version) == (
        before.access_token,
        before.refresh_token,
        before.version,
    )
    assert provider.is_access_token_valid(after.access_token)
    assert after.failure_count == 1
    delay = (after.next_refresh_at - frozen_clock.current).total_seconds()
    assert (retry_after or 15) <= delay <= max(retry_after or 0, 30)
    event = last_event(connected_org)
    assert (event.kind, event.outcome, event.http_status) == ("refresh_failed", "failure", status)
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.CONNECTED
    integration = Integration.objects.get(pk=connected_org.integration_id)
    assert (integration.throttled_until is not None) is (fault == "429")


def test_retries_back_off_alert_once_and_announce_recovery(frozen_clock, connected_org, provider):
    make_due(connected_org, frozen_clock)
    provider.fail_next("503", count=5)
    delays = []
    for _ in range(5):
        refresh(connected_org)
        token = Token.objects.get(org=connected_org)
        delays.append((token.next_refresh_at - frozen_clock.current).total_seconds())
        frozen_clock.current = token.next_refresh_at + timedelta(seconds=1)
    assert delays[-1] > delays[0] * 4
    assert Token.objects.get(org=connected_org).failure_count == 5
    assert [m.subject for m in mail.outbox] == [
        "[Django] Token refresh failing for Acme Contact Center"
    ]
    assert refresh(connected_org).outcome == "refreshed"
    token = Token.objects.get(org=connected_org)
    assert (token.failure_count, token.failing_alerted) == (0, False)
    assert mail.outbox[-1].subject == "[Django] Acme Contact Center has recovered"
    assert len(mail.outbox) == 2


@pytest.mark.parametrize("fault", ["invalid_grant", "invalid_client"])
def test_permanent_rejection_needs_reconnect_mails_once_and_stops(
    frozen_clock, connected_org, provider, fault
):
    before = make_due(connected_org, frozen_clock)
    provider.fail_next(fault)
    result = refresh(connected_org)
    org = Org.objects.get(pk=connected_org.pk)
    token = Token.objects.get(org=connected_org)
    assert result.outcome == "needs_reconnect"
    assert org.status == Org.Status.NEEDS_RECONNECT
    assert fault in org.status_reason
    assert token.next_refresh_at is None
    assert token.access_token == before.access_token  # kept, still usable until it expires
    assert last_event(connected_org).error_code == fault
    assert len(mail.outbox) == 1
    assert "needs to be reconnected" in mail.outbox[0].subject
    provider.reset_records()
    with pytest.raises(OrgNotRefreshable, match="reconnected"):
        refresh(connected_org, force=True)
    assert provider.token_calls == []
    assert len(mail.outbox) == 1


def test_reconnect_after_needs_reconnect_mails_recovery(frozen_clock, connected_org, provider):
    from tests.conftest import connect_org

    make_due(connected_org, frozen_clock)
    provider.fail_next("invalid_grant")
    refresh(connected_org)
    with TestCase.captureOnCommitCallbacks(execute=True):
        connect_org(connected_org, provider)
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.CONNECTED
    assert [m.subject.split("] ")[1] for m in mail.outbox] == [
        "Acme Contact Center needs to be reconnected",
        "Acme Contact Center has recovered",
    ]


@pytest.mark.parametrize("status", ["pending", "disabled", "needs_reconnect"])
def test_org_that_is_not_connected_is_refused_without_a_provider_call(
    connected_org, provider, status
):
    Org.objects.filter(pk=connected_org.pk).update(status=status)
    provider.reset_records()
    with pytest.raises(OrgNotRefreshable, match=connected_org.slug):
        refresh(connected_org, force=True)
    assert provider.token_calls == []


def test_rotating_provider_with_reuse_detection_stays_connected_for_50_refreshes(
    frozen_clock, connected_org, provider
):
    provider.rotate_refresh_tokens = True
    provider.reuse_detection = True
    seen = set()
    for _ in range(50):
        make_due(connected_org, frozen_clock)
        assert refresh(connected_org).outcome == "refreshed"
        seen.add(Token.objects.get(org=connected_org).refresh_token)
    presented = [c["refresh_token"] for c in provider.token_calls if c["refresh_token"]]
    assert len(presented) == 50
    assert len(set(presented)) == 50  # no refresh token was ever presented twice
    assert len(seen) == 50
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.CONNECTED
    assert Token.objects.get(org=connected_org).version == 51


def test_no_secret_in_events_or_logs_across_refresh_outcomes(
    frozen_clock, connected_org, provider, caplog
):
    caplog.set_level("DEBUG")
    secrets = {provider.client_secret}
    for fault in ("500", "429", None, "invalid_grant"):
        make_due(connected_org, frozen_clock)
        token = Token.objects.get(org=connected_org)
        secrets |= {token.access_token, token.refresh_token}
        if fault:
            provider.fail_next(fault)
        refresh(connected_org)
    secrets.add(Token.objects.get(org=connected_org).access_token)
    history = " ".join(str(vars(event)) for event in TokenEvent.objects.all())
    outgoing = " ".join(m.subject + m.body for m in mail.outbox)
    for secret in secrets:
        assert secret not in history
        assert secret not in caplog.text
        assert secret not in outgoing


def test_refresh_refuses_an_org_moved_past_the_model_to_another_integration(
    frozen_clock, connected_org, provider, other_integration, other_provider
):
    before = make_due(connected_org, frozen_clock)
    # A bulk update skips Org.save(): the refresh itself must not follow the move.
    Org.objects.filter(pk=connected_org.pk).update(integration=other_integration)
    with pytest.raises(OrgNotRefreshable, match="another integration"):
        refresh(connected_org, force=True)
    assert other_provider.token_calls == []
    assert Token.objects.get(org=connected_org).version == before.version


def test_a_refresh_token_no_key_decrypts_needs_reconnect_and_a_reconnect_repairs_it(
    frozen_clock, connected_org, provider
):
    from tests.conftest import connect_org, store_under_lost_key

    token = make_due(connected_org, frozen_clock)
    store_under_lost_key(token, "refresh_token", "lost-refresh-token")
    provider.reset_records()
    result = refresh(connected_org)
    assert result.outcome == "needs_reconnect"
    assert provider.token_calls == []
    org = Org.objects.get(pk=connected_org.pk)
    assert org.status == Org.Status.NEEDS_RECONNECT
    assert "Token.refresh_token" in org.status_reason
    assert last_event(connected_org).error_code == "encryption_key"
    with TestCase.captureOnCommitCallbacks(execute=True):
        connect_org(connected_org, provider)
    token = Token.objects.get(org=connected_org)
    assert connected_org.status == Org.Status.CONNECTED
    assert token.refresh_token == provider.current_refresh_token_for(token.access_token)
    assert refresh(connected_org, force=True).outcome == "refreshed"


# Absurd answers, and faults while storing a good one -----------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "lifetime", "warning"),
    [
        (1e30, 365 * 24 * 3600, "expires_in of 1e+30 s is beyond the maximum"),
        ("abc", 3600, "expires_in is not a positive number of seconds"),
        (-5, 3600, "expires_in is not a positive number of seconds"),
    ],
)
def test_an_absurd_expires_in_is_clamped_stored_and_recorded_as_a_warning(
    frozen_clock, connected_org, provider, expires_in, lifetime, warning
):
    before = make_due(connected_org, frozen_clock)
    provider.answer_overrides = {"expires_in": expires_in, "refresh_token_expires_in": expires_in}
    result = refresh(connected_org)
    token = Token.objects.get(org=connected_org)
    assert result.outcome == "refreshed"
    assert token.version == before.version + 1
    assert token.access_expires_at == frozen_clock.current + timedelta(seconds=lifetime)
    assert token.refresh_expires_at <= frozen_clock.current + timedelta(days=365)
    assert frozen_clock.current < token.next_refresh_at < token.access_expires_at
    event = last_event(connected_org)
    assert (event.kind, event.outcome) == ("refreshed", "warning")
    assert warning in event.message


def test_an_unusable_token_type_is_a_provider_error_that_keeps_the_token(
    frozen_clock, connected_org, provider
):
    before = make_due(connected_org, frozen_clock)
    provider.answer_overrides = {"token_type": "Bearer-" + "x" * 40}
    result = refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert result.outcome == "retry_scheduled"
    assert (after.access_token, after.token_type, after.version) == (
        before.access_token, "Bearer", before.version,
    )  # fmt: skip
    event = last_event(connected_org)
    assert (event.kind, event.outcome, event.http_status) == ("refresh_failed", "failure", 200)
    assert "unusable token_type" in event.message


def test_an_error_while_storing_keeps_the_new_tokens_and_plans_an_early_retry(
    frozen_clock, connected_org, provider, monkeypatch, caplog
):
    """A database fault while storing a good answer (simulated: the store raises once). The
    provider rotates refresh tokens, so losing the answer would strand the org."""
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    before = make_due(connected_org, frozen_clock)
    store, calls = refresh_service.token_store_answer, []

    def store_failing_once(*args: object, **kwargs: object) -> Token:
        calls.append(args)
        if len(calls) == 1:
            raise OverflowError("date value out of range")
        return store(*args, **kwargs)

    monkeypatch.setattr(refresh_service, "token_store_answer", store_failing_once)
    result = refresh(connected_org)
    token = Token.objects.get(org=connected_org)
    assert result.outcome == "refreshed"
    assert token.version == before.version + 1
    assert provider.is_access_token_valid(token.access_token)
    assert provider.current_refresh_token_for(token.access_token) == token.refresh_token
    assert (token.failure_count, token.last_error_code) == (1, "store_failed")
    assert token.next_refresh_at <= frozen_clock.current + timedelta(seconds=30)
    event = last_event(connected_org)
    assert (event.kind, event.outcome, event.error_code) == ("refreshed", "warning", "store_failed")
    assert "OverflowError" in event.message
    assert "storing the refresh answer of acme failed" in caplog.text
    frozen_clock.current = token.next_refresh_at  # the early retry ends the failure streak
    assert refresh(connected_org).outcome == "refreshed"
    assert Token.objects.get(org=connected_org).failure_count == 0


def test_when_not_even_the_tokens_can_be_stored_a_failure_and_a_retry_are_recorded(
    frozen_clock, connected_org, provider, monkeypatch
):
    before = make_due(connected_org, frozen_clock)

    def store_failing(*args: object, **kwargs: object) -> Token:
        raise DatabaseError("could not extend file: No space left on device")

    monkeypatch.setattr(refresh_service, "token_store_answer", store_failing)
    result = refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert result.outcome == "retry_scheduled"
    assert (after.access_token, after.version) == (before.access_token, before.version)
    assert after.failure_count == 1
    assert after.next_refresh_at > frozen_clock.current
    assert (after.refresh_claim, after.refreshing_until) == ("", None)
    event = last_event(connected_org)
    assert (event.kind, event.outcome, event.error_code) == (
        "refresh_failed", "failure", "store_failed",
    )  # fmt: skip


def test_rotated_refresh_token_without_an_expiry_forgets_the_old_expiry(
    frozen_clock, connected_org, provider
):
    before = make_due(connected_org, frozen_clock)
    assert before.refresh_expires_at is not None
    provider.rotate_refresh_tokens = True
    provider.include_expires_in = False  # nor refresh_token_expires_in
    refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert after.refresh_fingerprint != before.refresh_fingerprint
    assert after.refresh_expires_at is None


def test_same_refresh_token_without_an_expiry_keeps_its_expiry(
    frozen_clock, connected_org, provider
):
    before = make_due(connected_org, frozen_clock)
    provider.include_expires_in = False
    refresh(connected_org)
    after = Token.objects.get(org=connected_org)
    assert after.refresh_fingerprint == before.refresh_fingerprint
    assert after.refresh_expires_at == before.refresh_expires_at


@pytest.mark.django_db(transaction=True)  # durably retries only outside a transaction
def test_storing_is_tried_as_often_as_store_attempts_says(settings):
    from django.db import OperationalError

    from tokens.services.store import durably

    settings.TOKEN_CONSOLE = {"STORE_ATTEMPTS": 2, "STORE_RETRY_DELAY": 0}
    attempts = []

    def dropped_connection() -> None:
        attempts.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        durably(dropped_connection)
    assert len(attempts) == 2
