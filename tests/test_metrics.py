"""GET /metrics: every family with exact values from a seeded database, and who may read it."""

import importlib
import threading
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import checks
from django.db import OperationalError, connection, connections
from django.db.models import Count, F, Q, Sum
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from tokens import clock, services
from tokens.models import (
    Integration,
    Org,
    Token,
    TokenEvent,
    TokenEventRollup,
    TokenServedCount,
    fingerprint,
)

pytestmark = pytest.mark.django_db

METRICS_TOKEN = "metrics-token-for-tests-0123456789abcdef"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}
SECRETS: set[str] = set()  # filled by `seeded`, checked against every answer


def make_org(integration: Integration, slug: str, status: str, refresh_days: float | None) -> Org:
    """An org in `status`; with `refresh_days`, a token whose refresh token expires then."""
    org = Org.objects.create(name=slug, slug=slug, integration=integration, status=status)
    if refresh_days is not None:
        access, refresh = f"access-{slug}-secret-value", f"refresh-{slug}-secret-value"
        SECRETS.update({access, refresh})
        Token.objects.create(
            org=org, access_token=access, refresh_token=refresh,
            access_fingerprint=fingerprint(access), refresh_fingerprint=fingerprint(refresh),
            obtained_at=clock.now(), access_expires_at=clock.now() + timedelta(hours=1),
            refresh_expires_at=clock.now() + timedelta(days=refresh_days),
        )  # fmt: skip
    return org


def attempt(org: Org, kind: str, outcome: str, trigger: str, duration_ms: int | None) -> None:
    """Record an event as the services do, so its running totals are kept too."""
    services.token_event_record(
        org=org, kind=kind, outcome=outcome, trigger=trigger, duration_ms=duration_ms
    )


@pytest.fixture
def seeded(frozen_clock):
    """Orgs of every status but disabled, refresh events of known durations, served counts."""
    integration = Integration.objects.create(
        name="metrics", provider="generic", client_id="cid",
        client_secret="client-secret-never-shown",
        authorize_url="http://127.0.0.1:9/authorize", token_url="http://127.0.0.1:9/token",
    )  # fmt: skip
    SECRETS.add("client-secret-never-shown")
    acme = make_org(integration, "acme", Org.Status.CONNECTED, refresh_days=10)
    make_org(integration, "globex", Org.Status.CONNECTED, refresh_days=3)
    # Expires first, but the org is not connected: it does not count.
    make_org(integration, "initech", Org.Status.NEEDS_RECONNECT, refresh_days=1)
    make_org(integration, "hooli", Org.Status.PENDING, refresh_days=None)
    for ms in (40, 120, 700):
        attempt(acme, "refreshed", "success", "schedule", ms)
    attempt(acme, "refreshed", "success", "manual", 3000)
    attempt(acme, "refreshed", "warning", "api", 60)
    attempt(acme, "refresh_failed", "failure", "schedule", 15000)
    attempt(acme, "refresh_failed", "failure", "schedule", None)  # no duration recorded
    attempt(acme, "connected", "success", "callback", 500)  # not a refresh attempt
    client, key = services.api_client_create(name="flow", orgs=[acme])
    SECRETS.add(key)
    hour = clock.now().replace(minute=0, second=0, microsecond=0)
    TokenServedCount.objects.create(org=acme, client=client, hour=hour, count=5)
    TokenServedCount.objects.create(
        org=acme, client=client, hour=hour - timedelta(hours=1), count=7
    )


def scrape(client, **extra) -> dict[str, dict]:
    """GET /metrics and return {family name: {(sample name, labels): value}}."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    families = text_string_to_metric_families(response.content.decode())
    return {
        family.name: {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
        for family in families
    }


def test_answers_in_the_prometheus_text_format_and_is_never_cached(client, seeded):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    for name in (
        "tokenconsole_refresh_attempts_total",
        "tokenconsole_refresh_duration_seconds",
        "tokenconsole_tokens_served_total",
        "tokenconsole_orgs",
        "tokenconsole_refresh_token_earliest_expiry_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_refresh_attempts_count_by_outcome_and_trigger(client, seeded):
    samples = scrape(client)["tokenconsole_refresh_attempts"]
    assert samples == {
        ("tokenconsole_refresh_attempts_total", (("outcome", o), ("trigger", t))): n
        for o, t, n in [
            ("success", "schedule", 3),
            ("success", "manual", 1),
            ("warning", "api", 1),
            ("failure", "schedule", 2),
        ]
    }


def test_refresh_duration_histogram_has_exact_buckets_per_outcome(client, seeded):
    samples = scrape(client)["tokenconsole_refresh_duration_seconds"]
    bounds = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "20.0", "+Inf"]
    expected_buckets = {
        "success": [1, 1, 2, 2, 3, 3, 4, 4, 4, 4],  # 40, 120, 700, 3000 ms
        "warning": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # 60 ms
        "failure": [
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            1,
        ],  # 15000 ms; the one without a duration is left out
    }
    sums = {"success": 3.86, "warning": 0.06, "failure": 15.0}
    for outcome, counts in expected_buckets.items():
        for bound, count in zip(bounds, counts, strict=True):
            key = (
                "tokenconsole_refresh_duration_seconds_bucket",
                (("le", bound), ("outcome", outcome)),
            )
            assert samples[key] == count, (outcome, bound)
        label = (("outcome", outcome),)
        assert samples[("tokenconsole_refresh_duration_seconds_count", label)] == counts[-1]
        assert samples[("tokenconsole_refresh_duration_seconds_sum", label)] == pytest.approx(
            sums[outcome]
        )


def test_tokens_served_orgs_and_earliest_refresh_token_expiry(client, seeded):
    metrics = scrape(client)
    assert metrics["tokenconsole_tokens_served"] == {("tokenconsole_tokens_served_total", ()): 12}
    assert metrics["tokenconsole_orgs"] == {
        ("tokenconsole_orgs", (("status", status),)): n
        for status, n in [("connected", 2), ("pending", 1), ("needs_reconnect", 1), ("disabled", 0)]
    }
    expiry = metrics["tokenconsole_refresh_token_earliest_expiry_seconds"]
    assert expiry == {("tokenconsole_refresh_token_earliest_expiry_seconds", ()): 3 * 86400}


def test_expiry_follows_the_clock_and_goes_negative_once_expired(client, seeded, frozen_clock):
    frozen_clock.advance(days=4)
    expiry = scrape(client)["tokenconsole_refresh_token_earliest_expiry_seconds"]
    assert expiry == {("tokenconsole_refresh_token_earliest_expiry_seconds", ()): -86400}


def test_an_empty_console_has_every_family_and_no_expiry_sample(client, frozen_clock):
    metrics = scrape(client)
    assert metrics["tokenconsole_refresh_attempts"] == {}
    assert metrics["tokenconsole_tokens_served"] == {("tokenconsole_tokens_served_total", ()): 0}
    assert metrics["tokenconsole_refresh_token_earliest_expiry_seconds"] == {}


def test_no_secret_appears_in_the_output(client, seeded):
    text = client.get("/metrics").content.decode()
    assert len(SECRETS) >= 7
    for secret in SECRETS:
        assert secret not in text


def test_another_address_is_refused(client, seeded):
    response = client.get("/metrics", **OUTSIDE)
    assert response.status_code == 403
    assert response.content == b"not allowed\n"
    assert response["Cache-Control"] == "no-store"


@override_settings(TOKEN_CONSOLE={"METRICS_TOKEN": METRICS_TOKEN})
def test_the_metrics_token_opens_it_from_anywhere(client, seeded):
    metrics = scrape(client, HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}", **OUTSIDE)
    assert metrics["tokenconsole_tokens_served"] == {("tokenconsole_tokens_served_total", ()): 12}


@override_settings(TOKEN_CONSOLE={"METRICS_TOKEN": METRICS_TOKEN})
@pytest.mark.parametrize(
    "header",
    [f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}", f"Basic {METRICS_TOKEN}", ""],
)
def test_a_wrong_token_is_refused(client, seeded, header):
    response = client.get("/metrics", HTTP_AUTHORIZATION=header, **OUTSIDE)
    assert response.status_code == 403
    assert response.content == b"not allowed\n"


@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "bearer  "])
def test_no_configured_token_means_no_token_access(client, seeded, header):
    assert client.get("/metrics", HTTP_AUTHORIZATION=header, **OUTSIDE).status_code == 403


@override_settings(TOKEN_CONSOLE={"METRICS_ALLOWED_NETWORKS": ""})
def test_no_networks_means_no_network_access(client, seeded):
    assert client.get("/metrics").status_code == 403  # not "any address", as for API clients


@override_settings(TOKEN_CONSOLE={"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, 2001:db8::/32"})
def test_configured_networks_are_allowed(client, seeded):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_forwarded_for_counts_only_behind_trusted_proxies(client, seeded):
    forwarded = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}
    assert client.get("/metrics", **forwarded).status_code == 403
    with override_settings(TOKEN_CONSOLE={"TRUSTED_PROXY_COUNT": 1}):
        assert client.get("/metrics", **forwarded).status_code == 200


def test_only_get_and_head(client, seeded):
    assert client.post("/metrics").status_code == 405


def test_database_down_is_503_without_detail(client, seeded, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("could not connect to server at db.internal")

    monkeypatch.setattr(connection, "cursor", unavailable)
    response = client.get("/metrics")
    monkeypatch.undo()
    assert response.status_code == 503
    assert response.content == b"database unavailable\n"


@override_settings(TOKEN_CONSOLE={"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8 not-a-network"})
def test_a_bad_network_setting_fails_the_system_check():
    errors = [m for m in checks.run_checks() if m.id == "tokens.E004"]
    assert len(errors) == 1
    assert "'not-a-network' is not a network" in errors[0].msg


# -- the running totals behind /metrics ------------------------------------------------------


def aggregate_over_events() -> dict[tuple[str, str, str], dict[str, int]]:
    """What the totals must hold, computed directly from the whole history."""
    buckets = {
        name: Count("id", filter=Q(duration_ms__lte=bound))
        for bound, name in TokenEventRollup.bucket_fields()
    }
    rows = (
        TokenEvent.objects.order_by()
        .values("kind", "trigger", "outcome")
        .annotate(count=Count("id"), timed=Count("duration_ms"), ms=Sum("duration_ms"), **buckets)
    )
    return {
        (r.pop("kind"), r.pop("trigger"), r.pop("outcome")): {**r, "ms": r["ms"] or 0} for r in rows
    }


def rollups() -> dict[tuple[str, str, str], dict[str, int]]:
    names = ["count", "timed", "ms"] + [name for _, name in TokenEventRollup.bucket_fields()]
    rows = TokenEventRollup.objects.annotate(ms=F("duration_ms_sum")).values(
        "kind", "trigger", "outcome", *names
    )
    return {(r.pop("kind"), r.pop("trigger"), r.pop("outcome")): r for r in rows}


def test_totals_equal_the_aggregate_over_events_after_refreshes_and_failures(
    connected_org, provider, frozen_clock, django_user_model
):
    admin = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    for fault in ["503", None, "html", None, "429", None]:
        if fault:
            provider.fail_next(fault)
        services.token_refresh(org_id=connected_org.pk, trigger="manual", actor=admin, force=True)
        frozen_clock.advance(minutes=5)
    services.token_refresh(org_id=connected_org.pk, trigger="schedule", force=True)
    provider.fail_next("invalid_grant")
    services.token_refresh(org_id=connected_org.pk, trigger="schedule", force=True)
    services.org_disconnect(org_id=connected_org.pk, actor=admin)
    kinds = set(TokenEvent.objects.values_list("kind", flat=True))
    assert {"connected", "refreshed", "refresh_failed", "disconnected"} <= kinds
    assert TokenEvent.objects.exclude(duration_ms=None).exists()
    assert rollups() == aggregate_over_events()


def test_the_migration_fills_the_totals_from_the_events_already_stored(seeded):
    expected = rollups()
    assert expected == aggregate_over_events()
    TokenEventRollup.objects.all().delete()
    migration = importlib.import_module("tokens.migrations.0006_event_rollups")
    migration.fill_rollups(django_apps, None)
    assert rollups() == expected


def test_the_totals_bucket_fields_match_the_histogram_bounds():
    names = {f.name for f in TokenEventRollup._meta.fields if f.name.startswith("le_")}
    assert names == {name for _, name in TokenEventRollup.bucket_fields()}
    assert len(names) == len(TokenEventRollup.DURATION_BUCKETS_MS)


def test_a_scrape_reads_the_totals_not_the_history(client, seeded):
    with CaptureQueriesContext(connection) as queries:
        assert scrape(client)["tokenconsole_refresh_attempts"]
    event_table = TokenEvent._meta.db_table
    assert not [q["sql"] for q in queries if f'"{event_table}"' in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_workers_recording_the_same_kind_at_once_lose_no_count(integration, real_time_clock):
    org = Org.objects.create(name="Busy", slug="busy", integration=integration)
    workers, each = 4, 15
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []

    def record() -> None:
        try:
            barrier.wait()
            for _ in range(each):
                services.token_event_record(
                    org=org, kind="refreshed", trigger="schedule", outcome="success",
                    duration_ms=75,
                )  # fmt: skip
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=record) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    total = TokenEventRollup.objects.get(kind="refreshed", trigger="schedule", outcome="success")
    assert (total.count, total.le_50, total.le_100) == (workers * each, 0, workers * each)
    assert total.duration_ms_sum == 75 * workers * each
