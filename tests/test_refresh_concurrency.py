"""Single flight on a real database: concurrent triggers, and a process killed mid-refresh."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from tests.conftest import connect_org, database_url_for_subprocess
from tokens import checks, services
from tokens.models import Integration, Org, Token, TokenEvent
from tokens.services.store import locked_org_and_token

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


def test_twenty_concurrent_triggers_make_exactly_one_provider_call(real_time_clock, org, provider):
    connect_org(org, provider)
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    real_time_clock.current = Token.objects.get(org=org).next_refresh_at + timedelta(seconds=1)
    provider.reset_records()
    provider.latency = 0.6  # in flight while the others arrive; under the 1 s test timeout
    barrier = threading.Barrier(20)
    outcomes: list[tuple[bool, str]] = []

    def trigger(wait: bool) -> None:
        try:
            barrier.wait()
            result = services.token_refresh(org_id=org.pk, trigger="api", wait=wait)
            outcomes.append((wait, result.outcome))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=trigger, args=(i % 2 == 0,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 20
    assert provider.refresh_call_count() == 1
    # Every waiter reports the one refresh it waited for (the provider holds it for a
    # second, so all of them arrive while it is in flight); a caller that does not wait
    # leaves at once, or finds it done.
    assert [outcome for wait, outcome in outcomes if wait] == ["refreshed"] * 10
    assert {outcome for wait, outcome in outcomes if not wait} <= {"refreshed", "in_progress"}
    token = Token.objects.get(org=org)
    assert token.version == 2
    assert provider.is_access_token_valid(token.access_token)
    assert Org.objects.get(pk=org.pk).status == Org.Status.CONNECTED


def test_process_killed_mid_refresh_loses_nothing_and_the_next_run_recovers(
    real_time_clock, org, provider
):
    connect_org(org, provider)
    before = Token.objects.get(org=org)
    provider.reset_records()
    provider.latency = 30  # the child is killed while the provider holds its request
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tokenconsole.settings",
        "DATABASE_URL": database_url_for_subprocess(),
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "SECRET_KEY": "killed-refresh-test",
    }
    child = subprocess.Popen(
        [sys.executable, "manage.py", "refresh_tokens", "--org", org.slug, "--force"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert provider.wait_for_token_arrivals(1, timeout=30), "the child never called"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    provider.latency = 0
    stranded = Token.objects.get(org=org)
    assert (stranded.access_token, stranded.refresh_token, stranded.version) == (
        before.access_token,
        before.refresh_token,
        before.version,
    )
    assert stranded.refreshing_until is not None  # the dead process's claim
    assert services.token_refresh(org_id=org.pk, trigger="schedule", force=True).outcome == (
        "in_progress"
    )
    real_time_clock.current = stranded.refreshing_until + timedelta(seconds=1)
    result = services.token_refresh(org_id=org.pk, trigger="schedule", force=True)
    assert result.outcome == "refreshed"
    after = Token.objects.get(org=org)
    assert after.version == before.version + 1
    assert provider.is_access_token_valid(after.access_token)


@pytest.mark.parametrize(
    ("fault", "interval"),
    [
        ("trickle", 0.04),  # the body: ~15 s for the whole answer, far past the 7 s lease
        ("trickle_headers", 0.1),  # the status line and headers: ~18 s before any body
    ],
)
def test_a_trickling_provider_is_cut_off_before_anyone_can_reuse_its_refresh_token(
    org, provider, settings, fault, interval
):
    """The provider sends each byte well within the read timeout, so only the total deadline
    ends the call, whether it trickles the body or the head before it: by it, the refresh
    gives up and keeps the token, while the lease (on the real clock) still keeps the sweep
    from presenting the same refresh token again."""
    settings.TOKEN_CONSOLE = {
        **settings.TOKEN_CONSOLE,
        "HTTP_CONNECT_TIMEOUT": 0.5,
        "HTTP_TOTAL_DEADLINE": 1.0,
        "REFRESH_LEASE": 7,
    }
    assert checks.check_refresh_lease(None) == []  # a configuration the check accepts
    connect_org(org, provider)
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    Token.objects.filter(org=org).update(next_refresh_at=timezone.now())  # due for the sweep
    before = Token.objects.get(org=org)
    provider.trickle_interval = interval
    provider.fail_next(fault)
    provider.reset_records()
    first: list[tuple[services.RefreshResult, float]] = []

    def refresh_first() -> None:
        try:
            started = time.monotonic()
            result = services.token_refresh(org_id=org.pk, trigger="schedule")
            first.append((result, time.monotonic() - started))
        finally:
            connections.close_all()

    worker = threading.Thread(target=refresh_first)
    worker.start()
    assert provider.wait_for_token_arrivals(1, timeout=10)
    sweeps = []
    while worker.is_alive():  # the sweep, meanwhile, on every tick
        sweeps.append(services.token_refresh(org_id=org.pk, trigger="schedule").outcome)
        worker.join(timeout=0.05)
    presented = [call["refresh_token"] for call in provider.token_calls]
    assert presented == [before.refresh_token]  # once, by the first refresh only
    assert "in_progress" in sweeps and set(sweeps) <= {"in_progress", "not_due"}
    (result, took), after = first[0], Token.objects.get(org=org)
    assert result.outcome == "retry_scheduled"
    assert (after.access_token, after.refresh_token, after.version) == (
        before.access_token, before.refresh_token, before.version,
    )  # fmt: skip
    assert provider.is_access_token_valid(after.access_token)
    event = TokenEvent.objects.filter(org=org).first()
    assert (event.kind, event.outcome) == ("refresh_failed", "failure")
    assert "did not finish answering within 1 s" in event.message
    assert took < 6  # sanity only, generous under load: the deadline, not the 15-18 s trickle


def test_a_lease_no_longer_than_the_provider_call_is_a_configuration_error(settings):
    assert checks.check_refresh_lease(None) == []  # the defaults
    settings.TOKEN_CONSOLE = {
        **settings.TOKEN_CONSOLE,
        "HTTP_CONNECT_TIMEOUT": 5.0,
        "HTTP_TOTAL_DEADLINE": 50.0,
        "REFRESH_LEASE": 60,
    }
    (error,) = checks.check_refresh_lease(None)
    assert error.id == "tokens.E007"
    assert "REFRESH_LEASE (60 s) must be longer than" in error.msg
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "HTTP_TOTAL_DEADLINE": 0.0}
    assert [e.id for e in checks.check_refresh_lease(None)] == ["tokens.E007"]


@pytest.mark.needs_postgres  # SQLite has no row locks
def test_a_refresh_transaction_locks_its_org_but_not_the_integration(org, integration):
    # Every refresh of an integration's orgs would otherwise queue on its one row.
    held, release = threading.Event(), threading.Event()

    def hold_the_claim_locks() -> None:
        try:
            with transaction.atomic():
                locked_org_and_token(org.pk, with_integration=True)
                held.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold_the_claim_locks)
    thread.start()
    try:
        assert held.wait(timeout=10)
        with transaction.atomic():
            Integration.objects.select_for_update(nowait=True).get(pk=integration.pk)
        with pytest.raises(DatabaseError), transaction.atomic():
            Org.objects.select_for_update(nowait=True).get(pk=org.pk)
    finally:
        release.set()
        thread.join(timeout=10)
