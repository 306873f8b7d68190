"""GET /metrics: Prometheus metrics read from the database at scrape time.

The console runs as several web processes and several django-q2 workers; counters kept
in any one process would see only its slice, and a scrape lands on one web process. So
a collector reads the database, which every process writes and which is the source of
truth, each time it is scraped: every web process answers the same figures.

What a scrape costs: four small queries, whatever the size of the history. Orgs by status
and the earliest expiry read the org and token tables. Refresh attempts and their latency
read TokenEventRollup, running totals that token_event_record adds each event to in the
event's own transaction (at most a row per kind, trigger and outcome); pruning old events
leaves them be, so the counters never go down. Tokens served add up the hourly counts
(a row per org, API client and hour served: that table still grows with time).

The registry is our own, without the default process and platform collectors: a scrape
goes to whichever web process the load balancer picks, so process_* series would jump
between processes under one target. Watch processes with the supervisor or node exporter.
"""

from collections.abc import Iterator
from datetime import datetime

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import apikeys, clock, selectors
from .api.addresses import source_address
from .conf import app_settings

PREFIX = "tokenconsole"


class DatabaseCollector:
    """Reads every metric from the database when collected."""

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from four queries on small tables."""
        attempts = selectors.refresh_attempts()
        yield _refresh_attempts(attempts)
        yield _refresh_duration(attempts)
        served = CounterMetricFamily(
            f"{PREFIX}_tokens_served",
            "Access tokens served by the token API (each process writes its counts "
            "at most API_SERVED_FLUSH_INTERVAL seconds late).",
        )
        served.add_metric([], selectors.tokens_served_total())
        yield served
        orgs = GaugeMetricFamily(f"{PREFIX}_orgs", "Orgs by status.", labels=["status"])
        for status, count in selectors.org_status_counts().items():
            orgs.add_metric([status], count)
        yield orgs
        yield _refresh_token_expiry(selectors.refresh_token_earliest_expiry())


def _refresh_attempts(attempts: list[selectors.RefreshAttempts]) -> Metric:
    family = CounterMetricFamily(
        f"{PREFIX}_refresh_attempts",
        "Refresh attempts (calls to the provider's token endpoint) by outcome and trigger.",
        labels=["outcome", "trigger"],
    )
    for row in attempts:
        family.add_metric([row.outcome, row.trigger], row.count)
    return family


def _refresh_duration(attempts: list[selectors.RefreshAttempts]) -> Metric:
    """One histogram per outcome, adding up the triggers' rows."""
    family = HistogramMetricFamily(
        f"{PREFIX}_refresh_duration_seconds",
        "How long refresh attempts took, provider call and storing included.",
        labels=["outcome"],
    )
    bounds = selectors.REFRESH_DURATION_BUCKETS_MS
    by_outcome: dict[str, list[int]] = {}
    for row in attempts:
        totals = by_outcome.setdefault(row.outcome, [0] * (len(bounds) + 2))
        for index, value in enumerate((*row.cumulative, row.timed, row.duration_ms_sum)):
            totals[index] += value
    for outcome, totals in sorted(by_outcome.items()):
        *cumulative, timed, duration_ms_sum = totals
        buckets = [
            (floatToGoString(bound / 1000), n) for bound, n in zip(bounds, cumulative, strict=True)
        ]
        family.add_metric([outcome], [*buckets, ("+Inf", timed)], duration_ms_sum / 1000)
    return family


def _refresh_token_expiry(earliest: datetime | None) -> Metric:
    """Seconds left on the first refresh token to expire; no sample when none is known."""
    family = GaugeMetricFamily(
        f"{PREFIX}_refresh_token_earliest_expiry_seconds",
        "Seconds until the first refresh token of a connected org expires (negative: "
        "expired). Absent when no connected org has a known refresh-token expiry.",
    )
    if earliest is not None:
        family.add_metric([], (earliest - clock.now()).total_seconds())
    return family


registry = CollectorRegistry(auto_describe=False)
registry.register(DatabaseCollector())


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in the Prometheus text format, for allowed networks or the metrics token."""
    if not metrics_access_allowed(request):
        response = HttpResponse("not allowed\n", status=403, content_type="text/plain")
    else:
        response = _exposition()
    response["Cache-Control"] = "no-store"
    return response


def _exposition() -> HttpResponse:
    try:
        body = generate_latest(registry)
    except DatabaseError:
        # A 5xx marks the target down in Prometheus (up == 0), which is the truth.
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)


def metrics_access_allowed(request: HttpRequest) -> bool:
    """From METRICS_ALLOWED_NETWORKS (empty: none), or with `Bearer <METRICS_TOKEN>`."""
    networks = apikeys.networks_parse(app_settings.METRICS_ALLOWED_NETWORKS)
    if networks and apikeys.address_allowed(source_address(request), networks):
        return True
    expected = app_settings.METRICS_TOKEN
    presented = apikeys.bearer_credential(request.META.get("HTTP_AUTHORIZATION", ""))
    if not expected or presented is None:
        return False
    return apikeys.constant_time_equal(presented, expected)
