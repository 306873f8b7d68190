"""Single flight on a real database: concurrent triggers, and a process killed mid-refresh."""

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, connections, transaction

from tests.conftest import connect_org, database_url_for_subprocess
from tokens import services
from tokens.models import Integration, Org, Token
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
