"""The fault suite, part one (both engines): a long provider outage, clock jumps, and a
database connection dropped while a provider's answer waits to be stored.

Each test says what must not be lost, and checks it.
"""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, connections
from django.test import TestCase

from tests.conftest import connect_org
from tokens import services
from tokens.models import Org, Token, TokenEvent

pytestmark = pytest.mark.django_db


def scheduled_refresh(org: Org) -> services.RefreshResult:
    """What the sweep's task does, with on-commit alert mail sent as after a real commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.token_refresh(org_id=org.pk, trigger="schedule")


def test_a_day_long_provider_outage_keeps_the_token_bounds_retries_and_alerts_once_each_way(
    frozen_clock, connected_org, provider
):
    """Must not be lost: the stored token (kept unchanged through the outage), and the
    admins' attention (exactly one 'failing' mail, then one 'recovered' mail)."""
    before = Token.objects.get(org=connected_org)
    frozen_clock.current = before.next_refresh_at
    outage_ends = frozen_clock.current + timedelta(hours=24)
    provider.fail_next("503", count=10_000)
    provider.reset_records()
    attempts = 0
    while frozen_clock.current < outage_ends:
        assert scheduled_refresh(connected_org).outcome == "retry_scheduled"
        attempts += 1
        frozen_clock.current = Token.objects.get(org=connected_org).next_refresh_at
    kept = Token.objects.get(org=connected_org)
    assert (kept.access_token, kept.refresh_token, kept.version) == (
        before.access_token, before.refresh_token, before.version,
    )  # fmt: skip
    # Backoff from 30 s doubling to a 30 min cap (jittered into its upper half): a day
    # of outage costs at most ~6 ramp-up attempts plus 24 h / 15 min.
    assert attempts == len(provider.token_calls) <= 6 + 24 * 4
    assert [m.subject for m in mail.outbox if "failing" in m.subject.lower()] != []
    assert len(mail.outbox) == 1

    provider.clear_faults()
    assert scheduled_refresh(connected_org).outcome == "refreshed"
    after = Token.objects.get(org=connected_org)
    assert after.version == before.version + 1 and after.failure_count == 0
    assert provider.is_access_token_valid(after.access_token)
    assert len(mail.outbox) == 2 and "recover" in mail.outbox[1].subject.lower()
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.CONNECTED


def test_a_clock_jump_forward_refreshes_what_is_now_due_and_loses_nothing(
    frozen_clock, integration, provider, client
):
    """Must not be lost: any org (all become due at once and are all refreshed, each once)."""
    orgs = [
        connect_org(
            Org.objects.create(name=f"O{n}", slug=f"o{n}", integration=integration), provider
        )
        for n in range(4)
    ]
    frozen_clock.advance(days=30)  # past every access token's expiry
    provider.reset_records()
    assert services.refresh_dispatch_due() == 4
    for org in orgs:
        assert scheduled_refresh(org).outcome == "refreshed"
    assert services.refresh_dispatch_due() == 0
    assert provider.refresh_call_count() == 4
    assert all(t.version == 2 for t in Token.objects.all())


def test_a_clock_jump_back_does_not_leave_an_org_waiting_out_a_stale_lease(
    frozen_clock, connected_org, provider
):
    """Must not be lost: the org's refreshes (a lease taken before the jump does not block
    it for the length of the jump); a lease within the allowed skew still holds."""
    token = Token.objects.get(org=connected_org)
    frozen_clock.current = token.next_refresh_at
    Token.objects.filter(pk=token.pk).update(
        refreshing_until=frozen_clock.current
        + timedelta(seconds=90)  # another machine, a bit ahead
    )
    assert scheduled_refresh(connected_org).outcome == "in_progress"
    Token.objects.filter(pk=token.pk).update(
        refreshing_until=frozen_clock.current + timedelta(days=1)  # set before a day's jump back
    )
    assert services.refresh_dispatch_due() == 1
    assert scheduled_refresh(connected_org).outcome == "refreshed"
    assert provider.refresh_call_count() == 1


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_before_the_answer_is_stored_is_retried(org, provider):
    """Must not be lost: the provider's answer. With rotation and reuse detection, a
    dropped answer would strand the org (its old refresh token is spent); the store
    transaction is retried on a fresh connection and the new token is kept."""
    connect_org(org, provider)
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    provider.latency = 0.5
    provider.reset_records()
    backend: dict[str, int] = {}
    outcome: list[str] = []

    def refresh() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend["pid"] = cursor.fetchone()[0]
            result = services.token_refresh(org_id=org.pk, trigger="schedule", force=True)
            outcome.append(result.outcome)
        finally:
            connections.close_all()

    worker = threading.Thread(target=refresh)
    worker.start()
    assert provider.wait_for_token_arrivals(1, timeout=10)  # the claim is committed
    with connection.cursor() as cursor:  # what a failover or a DBA's kill does to it
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend["pid"]])
    worker.join(timeout=30)
    assert outcome == ["refreshed"]
    token = Token.objects.get(org=org)
    assert token.version == 2
    assert provider.is_access_token_valid(token.access_token)
    assert provider.current_refresh_token_for(token.access_token) == token.refresh_token
    assert TokenEvent.objects.filter(org=org, kind="refreshed").count() == 1
