"""What reads token state: due orgs for the sweep, expiring refresh tokens, the API's lookup."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet, Sum
from django_q.models import Success

from .alerts import alert_channels
from .conf import app_settings, webhook_cluster_name
from .fields import decrypt_cached
from .models import (
    ApiClient,
    Integration,
    Org,
    Token,
    TokenEvent,
    TokenEventRollup,
    TokenServedCount,
)
from .timeline import TimelineRow


def tokens_due(*, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(org id, integration id) of connected orgs whose refresh is due and not yet queued."""
    return list(tokens_due_query(now=now, limit=limit))


def tokens_due_query(*, now: datetime, limit: int) -> QuerySet:
    """The query behind tokens_due (the scale benchmark prints its plan).

    Ordered by next_refresh_at, so the index on it answers the query; the other
    conditions only thin out the (small) due range.
    """
    # A mark ending further ahead than its lease was set before the clock jumped back:
    # it does not hold the org back (see services.refresh.in_flight).
    skew = app_settings.CLOCK_SKEW_TOLERANCE
    dispatch_lease = now + timedelta(seconds=app_settings.DISPATCH_LEASE + skew)
    refresh_lease = now + timedelta(seconds=app_settings.REFRESH_LEASE + skew)
    return (
        Token.objects.filter(next_refresh_at__lte=now, org__status=Org.Status.CONNECTED)
        .exclude(dispatched_until__gt=now, dispatched_until__lte=dispatch_lease)
        .exclude(refreshing_until__gt=now, refreshing_until__lte=refresh_lease)
        .order_by("next_refresh_at")
        .values_list("org_id", "org__integration_id")[:limit]
    )


def integration_budgets(*, now: datetime, integration_ids: set[int]) -> dict[int, int]:
    """How many refreshes each integration may start in this sweep (0 while throttled)."""
    budgets = {}
    for integration in Integration.objects.filter(pk__in=integration_ids):
        throttled = integration.throttled_until and integration.throttled_until > now
        budgets[integration.pk] = 0 if throttled else integration.rate_per_minute
    return budgets


def refresh_tokens_expiring(*, now: datetime) -> list[Token]:
    """Connected orgs whose refresh token expires within the warning window, not yet alerted."""
    horizon = now + timedelta(days=app_settings.REFRESH_EXPIRY_WARNING_DAYS)
    candidates = Token.objects.filter(
        org__status=Org.Status.CONNECTED, refresh_expires_at__lte=horizon
    ).select_related("org")
    return [t for t in candidates if t.expiry_alerted_fingerprint != t.refresh_fingerprint]


def org_status_counts() -> dict[str, int]:
    """How many orgs are in each status (every status present, zero when none)."""
    counts = dict.fromkeys(Org.Status.values, 0)
    for row in Org.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def cluster_last_task_at() -> datetime | None:
    """When a django-q2 worker last finished a task successfully; None if never (or pruned).

    django-q2 writes this row from the worker's side after the task ran, with either
    broker, so it measures work done rather than a process being up. django-q2 prunes the
    table to Q_CLUSTER's save_limit rows (1000), so the unindexed ordering stays cheap.
    Tasks of the webhook cluster do not count: they prove that cluster alive, not the one
    that runs the sweeps and refreshes (deliveries go on while it is down).
    """
    finished = Success.objects.all()
    if cluster := webhook_cluster_name():
        finished = finished.exclude(cluster=cluster)
    return finished.order_by("-stopped").values_list("stopped", flat=True).first()


@dataclass(frozen=True)
class ApiCaller:
    """The API client a key prefix names, as the token API needs it."""

    id: int
    key_hash: str
    revoked: bool
    all_orgs: bool
    allowed_networks: str
    last_used_at: datetime | None


@dataclass(frozen=True)
class ApiOrgToken:
    """An org and its current access token, as the token API serves it."""

    org_id: int
    slug: str
    status: str
    status_reason: str
    provider_org_id: str
    cluster_id: str
    in_scope: bool
    access_token: str | None = field(repr=False)
    token_type: str | None
    access_expires_at: datetime | None


# The column the lookup decrypts, through the field's own code (t.access_token, stored bytes).
_ACCESS_TOKEN = Token._meta.get_field("access_token")


@cache
def _api_lookup_sql() -> str:
    def table(model) -> str:
        return connection.ops.quote_name(model._meta.db_table)

    scope = table(ApiClient.orgs.through)
    # Only table names from the models are formatted in; values are parameters.
    return (
        "SELECT c.id, c.key_hash, c.revoked_at IS NOT NULL, c.all_orgs, c.allowed_networks, "  # noqa: S608
        "c.last_used_at, o.id, o.slug, o.status, o.status_reason, o.provider_org_id, "
        "o.cluster_id, "
        f"EXISTS (SELECT 1 FROM {scope} s WHERE s.apiclient_id = c.id AND s.org_id = o.id), "
        "t.access_token, t.token_type, t.access_expires_at "
        f"FROM {table(ApiClient)} c "
        f"LEFT JOIN {table(Org)} o ON o.slug = %s "
        f"LEFT JOIN {table(Token)} t ON t.org_id = o.id "
        "WHERE c.key_prefix = %s"
    )


def api_token_lookup(*, key_prefix: str, slug: str) -> tuple[ApiCaller | None, ApiOrgToken | None]:
    """The client of a key prefix, and the org of a slug with its token, in one query.

    The token API's hot path. One hand-written statement on three unique indexes,
    because compiling the equivalent ORM queries costs more than running them.
    """
    with connection.cursor() as cursor:
        cursor.execute(_api_lookup_sql(), [slug, key_prefix])
        row = cursor.fetchone()
    if row is None:
        return None, None
    caller = ApiCaller(
        id=row[0], key_hash=row[1], revoked=bool(row[2]), all_orgs=bool(row[3]),
        allowed_networks=row[4], last_used_at=_aware(row[5]),
    )  # fmt: skip
    if row[6] is None:
        return caller, None
    return caller, ApiOrgToken(
        org_id=row[6], slug=row[7], status=row[8], status_reason=row[9],
        provider_org_id=row[10], cluster_id=row[11], in_scope=bool(row[12]),
        access_token=decrypt_cached(bytes(row[13]), _ACCESS_TOKEN) if row[13] else None,
        token_type=row[14], access_expires_at=_aware(row[15]),
    )  # fmt: skip


def api_org_token(*, org: Org, in_scope: bool = True) -> ApiOrgToken:
    """The same record for an org read through the ORM (legacy path, after a refresh)."""
    token = Token.objects.defer("refresh_token").filter(org_id=org.pk).first()
    return ApiOrgToken(
        org_id=org.pk, slug=org.slug, status=org.status, status_reason=org.status_reason,
        provider_org_id=org.provider_org_id, cluster_id=org.cluster_id, in_scope=in_scope,
        access_token=token.access_token if token else None,
        token_type=token.token_type if token else None,
        access_expires_at=token.access_expires_at if token else None,
    )  # fmt: skip


@dataclass(frozen=True)
class LegacyMatch:
    """What the legacy /api/token headers name, before the passphrase is checked."""

    orgs: list[Org]  # every org bound to the provider org id (old data may hold several)
    clients: list[ApiClient]  # active clients with this X-From that may read one of them


def api_legacy_lookup(*, provider_org_id: str, sender: str) -> LegacyMatch:
    """The orgs of a provider org id and the legacy clients of an X-From that may read them.

    Cheap on purpose: the clients are found by X-From, not by trying each one's slow
    passphrase hash, so the caller checks one passphrase at most.
    """
    orgs = list(Org.objects.filter(provider_org_id=provider_org_id).order_by("pk"))
    clients = (
        ApiClient.objects.filter(revoked_at__isnull=True, legacy_from=sender)
        .exclude(legacy_passphrase_hash="")
        .filter(Q(all_orgs=True) | Q(orgs__in=orgs))
        .distinct()
        .order_by("pk")
    )
    return LegacyMatch(orgs=orgs, clients=list(clients))


def api_legacy_readable(*, client: ApiClient, orgs: list[Org]) -> list[Org]:
    """Those of `orgs` the client may read."""
    if client.all_orgs or len(orgs) < 2:  # one org: the client was found through it
        return orgs
    in_scope = set(client.orgs.filter(pk__in=[o.pk for o in orgs]).values_list("pk", flat=True))
    return [org for org in orgs if org.pk in in_scope]


def api_client_legacy_overlap(
    *, legacy_from: str, all_orgs: bool, orgs: list[Org], exclude_pk: int | None
) -> ApiClient | None:
    """An active client with the same legacy X-From that may read one of the same orgs.

    Such a pair would make /api/token guess which passphrase to check: it checks one.
    """
    if not legacy_from:
        return None
    others = (
        ApiClient.objects.filter(revoked_at__isnull=True, legacy_from=legacy_from)
        .exclude(legacy_passphrase_hash="")
        .exclude(pk=exclude_pk)
    )
    if not all_orgs:
        others = others.filter(Q(all_orgs=True) | Q(orgs__in=orgs))
    return others.distinct().order_by("pk").first()


def _aware(value: datetime | str | None) -> datetime | None:
    """A raw cursor's datetime as an aware UTC datetime (SQLite hands back text)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Dashboard:
    """What the admin index shows: where things stand and what needs a human."""

    status_counts: list[tuple[str, str, int]]  # status, its label, how many orgs
    needs_reconnect: list[Org]
    refresh_expiring: list[Org]
    failing: list[Org]
    outcomes_24h: dict[str, int]
    timeline: list[TimelineRow]
    timeline_total: int
    alerts_reach_nobody: bool = False  # no alert channel is configured (tokens.W010)


DASHBOARD_LIST_LIMIT = 20
TIMELINE_LIMIT = 100


def dashboard_figures(*, now: datetime) -> Dashboard:
    """Counts by status, orgs needing action, the last 24 h of refreshes, the timeline rows."""
    counts = org_status_counts()
    horizon = now + timedelta(days=app_settings.REFRESH_EXPIRY_WARNING_DAYS)
    connected = Org.objects.filter(status=Org.Status.CONNECTED).select_related("token")
    events = TokenEvent.objects.filter(
        created_at__gte=now - timedelta(hours=24),
        kind__in=[TokenEvent.Kind.REFRESHED, TokenEvent.Kind.REFRESH_FAILED],
    )
    outcomes = dict(events.values_list("outcome").annotate(n=Count("id")).order_by())
    with_token = connected.filter(token__isnull=False).order_by(
        F("token__refresh_expires_at").asc(nulls_last=True), "token__access_expires_at"
    )
    return Dashboard(
        status_counts=[(s.value, s.label, counts[s.value]) for s in Org.Status],
        needs_reconnect=list(
            Org.objects.filter(status=Org.Status.NEEDS_RECONNECT)[:DASHBOARD_LIST_LIMIT]
        ),
        refresh_expiring=list(
            connected.filter(token__refresh_expires_at__lte=horizon).order_by(
                "token__refresh_expires_at"
            )[:DASHBOARD_LIST_LIMIT]
        ),
        failing=list(
            connected.filter(token__failure_count__gt=0).order_by("-token__failure_count")[
                :DASHBOARD_LIST_LIMIT
            ]
        ),
        outcomes_24h={outcome: outcomes.get(outcome, 0) for outcome in TokenEvent.Outcome.values},
        timeline=[_timeline_row(org) for org in with_token[:TIMELINE_LIMIT]],
        timeline_total=with_token.count(),
        alerts_reach_nobody=not alert_channels(),
    )


def _timeline_row(org: Org) -> TimelineRow:
    return TimelineRow(
        org_id=org.pk,
        name=org.name,
        status=org.status,
        access_expires_at=org.token.access_expires_at,
        refresh_expires_at=org.token.refresh_expires_at,
        next_refresh_at=org.token.next_refresh_at,
    )


# Upper bounds (milliseconds) of the refresh latency histogram on /metrics.
REFRESH_DURATION_BUCKETS_MS = TokenEventRollup.DURATION_BUCKETS_MS


@dataclass(frozen=True)
class RefreshAttempts:
    """The recorded refresh attempts of one outcome and trigger, and their durations."""

    outcome: str
    trigger: str
    count: int
    timed: int  # attempts with a recorded duration
    duration_ms_sum: int
    cumulative: tuple[int, ...]  # attempts at or under each REFRESH_DURATION_BUCKETS_MS bound


def refresh_attempts() -> list[RefreshAttempts]:
    """Every refresh attempt ever recorded, by outcome and trigger, from the running totals.

    Reads TokenEventRollup (at most a row per kind, trigger and outcome), never the
    history itself: the cost does not grow with the number of events, and pruned events
    still count.
    """
    buckets = [name for _, name in TokenEventRollup.bucket_fields()]
    rows = (
        TokenEventRollup.objects.filter(
            kind__in=[TokenEvent.Kind.REFRESHED, TokenEvent.Kind.REFRESH_FAILED]
        )
        .order_by()
        .values("outcome", "trigger")
        .annotate(
            n=Sum("count"),
            timed_n=Sum("timed"),
            total=Sum("duration_ms_sum"),
            **{f"{name}_n": Sum(name) for name in buckets},
        )
    )
    return [
        RefreshAttempts(
            outcome=row["outcome"],
            trigger=row["trigger"],
            count=row["n"],
            timed=row["timed_n"],
            duration_ms_sum=row["total"],
            cumulative=tuple(row[f"{name}_n"] for name in buckets),
        )
        for row in rows
    ]


def tokens_served_total() -> int:
    """Access tokens the API has served, as far as the processes have written their counts."""
    return TokenServedCount.objects.aggregate(total=Sum("count"))["total"] or 0


def refresh_token_earliest_expiry() -> datetime | None:
    """When the first refresh token of a connected org expires; None if no expiry is known."""
    return Token.objects.filter(
        org__status=Org.Status.CONNECTED, refresh_expires_at__isnull=False
    ).aggregate(earliest=Min("refresh_expires_at"))["earliest"]


# The fields of one exported event, in order (docs/history.md; export_token_events --help).
EXPORT_FIELDS = (
    "id", "created_at", "org_id", "org_slug", "kind", "trigger", "outcome", "actor",
    "http_status", "error_code", "message", "access_expires_at", "refresh_expires_at",
    "access_fingerprint", "refresh_fingerprint", "token_version", "duration_ms",
)  # fmt: skip


def token_events_export(
    *, since: datetime, until: datetime | None = None, batch_size: int = 1000
) -> Iterator[dict[str, object]]:
    """Events from `since` (inclusive) to `until` (exclusive), oldest first, as EXPORT_FIELDS.

    Read in keyset batches of `batch_size` on the (created_at, id) index: memory stays
    constant, and no query or snapshot stays open while the caller writes the rows out.
    """
    events = TokenEvent.objects.filter(created_at__gte=since).order_by("created_at", "id")
    if until is not None:
        events = events.filter(created_at__lt=until)
    columns = [name for name in EXPORT_FIELDS if name != "actor"]
    after = None
    while True:
        batch = events
        if after is not None:
            batch = batch.filter(
                Q(created_at__gt=after[0]) | Q(id__gt=after[1]), created_at__gte=after[0]
            )
        rows = list(batch.values(*columns, actor_username=F("actor__username"))[:batch_size])
        for row in rows:
            row["actor"] = row.pop("actor_username")
            yield {name: _exported(row[name]) for name in EXPORT_FIELDS}
        if len(rows) < batch_size:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


def _exported(value: object) -> object:
    """A value as JSON can hold it: datetimes in ISO 8601 UTC."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
