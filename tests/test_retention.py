"""Retention: the daily prune of old token events, its command, and what it must keep."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tokens import services, tasks
from tokens.models import Integration, Org, TokenEvent, TokenEventRollup

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(frozen_clock, integration: Integration) -> dict[str, TokenEvent]:
    """Two orgs' events over 500 days; returns the ones a 400-day prune must keep by name."""
    now = frozen_clock.current
    acme = Org.objects.create(name="Acme", slug="acme", integration=integration)
    globex = Org.objects.create(name="Globex", slug="globex", integration=integration)
    kept: dict[str, TokenEvent] = {}

    def record(org: Org | None, kind: str, days_ago: int, outcome: str = "success") -> TokenEvent:
        frozen_clock.current = now - timedelta(days=days_ago)
        return services.token_event_record(
            org=org, kind=kind, trigger="schedule", outcome=outcome, duration_ms=days_ago
        )

    for days_ago in (500, 490, 450):  # old refreshes of acme, and a newer one below
        record(acme, "refreshed", days_ago)
    record(acme, "connected", 480)
    kept["acme connected"] = record(acme, "connected", 470)  # old, but its latest connect
    kept["acme refreshed 200"] = record(acme, "refreshed", 200)  # within the retention
    kept["acme refreshed"] = record(acme, "refreshed", 10)
    record(globex, "refresh_failed", 460, outcome="failure")
    kept["globex refresh_failed"] = record(globex, "refresh_failed", 420, outcome="failure")
    record(None, "key_rotated", 600)
    kept["key_rotated"] = record(None, "key_rotated", 410)  # no org: kept as the latest too
    kept["globex recent"] = record(globex, "refreshed", 399)
    frozen_clock.current = now
    return kept


def totals() -> list[tuple]:
    return list(TokenEventRollup.objects.values_list("kind", "trigger", "outcome", "count"))


def test_prune_deletes_old_events_and_keeps_the_latest_of_each_kind_per_org(history):
    result = services.token_events_prune(days=400, batch_size=1000)
    remaining = set(TokenEvent.objects.values_list("pk", flat=True))
    assert remaining == {event.pk for event in history.values()}
    assert (result.deleted, result.kept_latest) == (6, 3)


def test_a_dry_run_deletes_nothing_and_counts_what_it_would(history):
    before = list(TokenEvent.objects.values_list("pk", flat=True))
    out = io_of("prune_token_events", "--dry-run")
    assert list(TokenEvent.objects.values_list("pk", flat=True)) == before
    assert "Would delete 6 token events from before 2025-09-27 12:00 UTC" in out
    assert "kept 3 older ones" in out


def test_prune_leaves_the_totals_and_metrics_unchanged(history, client):
    before_totals = totals()
    before_metrics = client.get("/metrics").content
    call_command("prune_token_events")
    assert TokenEvent.objects.count() == len(history)
    assert totals() == before_totals
    assert client.get("/metrics").content == before_metrics


def test_prune_deletes_in_short_batches_of_ids(history):
    with CaptureQueriesContext(connection) as queries:
        result = services.token_events_prune(days=400, batch_size=2)
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert result.deleted == 6
    assert len(deletes) == 3  # 6 events, 2 per batch, each its own statement
    assert [sql.split(" IN (")[1].count(",") for sql in deletes] == [1, 1, 1]  # 2 ids each


def test_the_command_uses_the_retention_setting(history):
    with override_settings(TOKEN_CONSOLE={"TOKEN_EVENT_RETENTION_DAYS": 30}):
        out = io_of("prune_token_events")
    # The 200-day-old refresh goes too: the 10-day-old one is acme's latest.
    assert "Deleted 7 token events" in out
    assert TokenEvent.objects.count() == len(history) - 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days must be at least 1 (got 0)."),
        (["--days", "-5"], "--days must be at least 1 (got -5)."),
        (["--batch-size", "0"], "--batch-size must be at least 1 (got 0)."),
    ],
)
def test_the_command_refuses_bad_input_and_changes_nothing(history, args, message):
    before = TokenEvent.objects.count()
    with pytest.raises(CommandError) as raised:
        call_command("prune_token_events", *args)
    assert str(raised.value) == message
    assert TokenEvent.objects.count() == before


@override_settings(TOKEN_CONSOLE={"TOKEN_EVENT_RETENTION_DAYS": 0})
def test_retention_off_prunes_nothing(history):
    before = TokenEvent.objects.count()
    assert "Retention is off" in io_of("prune_token_events")
    assert tasks.prune_token_events().startswith("retention is off")
    assert TokenEvent.objects.count() == before


def test_the_daily_task_prunes_with_the_settings(history):
    with override_settings(TOKEN_CONSOLE={"TOKEN_EVENT_PRUNE_BATCH": 4}):
        summary = tasks.prune_token_events()
    assert summary.startswith("Deleted 6 token events")
    assert TokenEvent.objects.count() == len(history)


def io_of(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
