"""What reads token state: due orgs for the sweep, expiring refresh tokens, the API's lookup."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet, Sum
from django.db.models.expressions import Col
from django_q.models import Success

from .alerts import alert_channels
from .conf import app_settings, webhook_cluster_name
from .fields import Sealed
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
    """The API client a key prefix (or a legacy X-From) names, as the token API needs it."""

    id: int
    name: str
    key_hash: str
    legacy_passphrase_hash: str
    revoked: bool
    all_orgs: bool
    allowed_networks: str
    last_used_at: datetime | None


@dataclass(frozen=True)
class ApiOrgToken:
    """An org and its current token, as the token API serves it.

    The access token stays sealed (its ciphertext) until api_access_token opens it, so
    that nothing is decrypted for a caller whose key has not been checked yet.
    """

    org_id: int
    slug: str
    status: str
    status_reason: str
    provider_org_id: str
    cluster_id: str
    in_scope: bool
    access_token: Sealed | None = field(repr=False)
    token_type: str | None
    access_expires_at: datetime | None
    next_refresh_at: datetime | None


# The columns the API's raw statements read: (alias, model, model field, record attribute).
# The SELECT list and the conversion of each value come from the model fields, and rows
# are read into the records by these names, so the statements follow the models.
_CALLER_COLUMNS = [
    ("c", ApiClient, name, name)
    for name in (
        "id", "name", "key_hash", "legacy_passphrase_hash", "revoked_at", "all_orgs",
        "allowed_networks", "last_used_at",
    )
]  # fmt: skip
_ORG_COLUMNS = [("o", Org, "id", "org_id")] + [
    ("o", Org, name, name)
    for name in ("slug", "status", "status_reason", "provider_org_id", "cluster_id")
]
_TOKEN_COLUMNS = [
    ("t", Token, name, name)
    for name in ("access_token", "token_type", "access_expires_at", "next_refresh_at")
]
_API_COLUMNS = _CALLER_COLUMNS + _ORG_COLUMNS + _TOKEN_COLUMNS


@dataclass(frozen=True)
class _Statement:
    """A raw statement of the API and, per selected column, its name and converters."""

    sql: str
    columns: list[tuple[str, Col, list]]  # record attribute, column expression, converters

    def rows(self, params: list) -> list[dict[str, object]]:
        """Run it; each row as {attribute: value}, converted as the ORM would convert it."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        named = []
        for row in rows:
            record = {}
            for (name, column, converters), value in zip(self.columns, row, strict=True):
                for converter in converters:
                    value = converter(value, column, connection)
                record[name] = value
            named.append(record)
        return named


def _quoted(model, field_name: str | None = None) -> str:
    """A model's table, or one of its fields' column, quoted for this database."""
    if field_name is None:
        return connection.ops.quote_name(model._meta.db_table)
    return connection.ops.quote_name(model._meta.get_field(field_name).column)


def _statement(tail: str) -> _Statement:
    """SELECT the API's columns, then the scope flag, then `tail` (FROM ... WHERE ...)."""
    columns, select = [], []
    for alias, model, field_name, name in _API_COLUMNS:
        column = Col(alias, model._meta.get_field(field_name))
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        columns.append((name, column, converters))
        select.append(f"{alias}.{_quoted(model, field_name)}")
    select.append(_in_scope())
    columns.append(("in_scope", None, [lambda value, *_: bool(value)]))
    return _Statement(sql=f"SELECT {', '.join(select)} {tail}", columns=columns)


def _joins(org_condition: str) -> str:
    """FROM the clients, each joined with the orgs that match, and their tokens."""
    return (
        f"FROM {_quoted(ApiClient)} c "
        f"{org_condition} "
        f"LEFT JOIN {_quoted(Token)} t ON t.{_quoted(Token, 'org')} = o.{_quoted(Org, 'id')} "
    )


@cache
def _api_lookup_statement(vendor: str) -> _Statement:
    """api_token_lookup's statement; parameters: slug, key prefix."""
    return _statement(
        _joins(f"LEFT JOIN {_quoted(Org)} o ON o.{_quoted(Org, 'slug')} = %s")
        + f"WHERE c.{_quoted(ApiClient, 'key_prefix')} = %s"
    )


def _in_scope() -> str:
    """Whether client c may read org o (it names the org; all_orgs aside)."""
    scope = ApiClient.orgs.through
    return (
        f"EXISTS (SELECT 1 FROM {_quoted(scope)} s "  # noqa: S608 (names from the models)
        f"WHERE s.{_quoted(scope, 'apiclient')} = c.{_quoted(ApiClient, 'id')} "
        f"AND s.{_quoted(scope, 'org')} = o.{_quoted(Org, 'id')})"
    )


@cache
def _api_legacy_statement(vendor: str) -> _Statement:
    """api_legacy_lookup's statement; parameters: provider org id, X-From, True.

    Only clients that may read the org come back, one row per client and org.
    """
    return _statement(
        _joins(f"JOIN {_quoted(Org)} o ON o.{_quoted(Org, 'provider_org_id')} = %s")
        + f"WHERE c.{_quoted(ApiClient, 'legacy_from')} = %s "
        f"AND c.{_quoted(ApiClient, 'revoked_at')} IS NULL "
        f"AND c.{_quoted(ApiClient, 'legacy_passphrase_hash')} <> '' "
        f"AND (c.{_quoted(ApiClient, 'all_orgs')} = %s OR {_in_scope()}) "
        f"ORDER BY c.{_quoted(ApiClient, 'id')}, o.{_quoted(Org, 'id')}"
    )


def _caller(row: dict[str, object]) -> ApiCaller:
    values = {name: row[name] for _, _, _, name in _CALLER_COLUMNS if name != "revoked_at"}
    return ApiCaller(**values, revoked=row["revoked_at"] is not None)


def _org_token(row: dict[str, object]) -> ApiOrgToken:
    names = [name for _, _, _, name in _ORG_COLUMNS + _TOKEN_COLUMNS]
    return ApiOrgToken(**{name: row[name] for name in names}, in_scope=row["in_scope"])


def api_token_lookup(*, key_prefix: str, slug: str) -> tuple[ApiCaller | None, ApiOrgToken | None]:
    """The client of a key prefix, and the org of a slug with its token, in one query.

    The token API's hot path. One hand-written statement on three unique indexes,
    because compiling the equivalent ORM queries costs more than running them (see
    bench/README.md). The access token stays sealed: nothing is decrypted here.
    """
    rows = _api_lookup_statement(connection.vendor).rows([slug, key_prefix])
    if not rows:
        return None, None
    row = rows[0]
    return _caller(row), (_org_token(row) if row["org_id"] is not None else None)


def api_org_token(*, org_id: int, in_scope: bool = True) -> ApiOrgToken | None:
    """The same record for an org, read through the ORM (after a refresh); None if no org."""
    names = [name for _, _, _, name in _ORG_COLUMNS + _TOKEN_COLUMNS]
    lookups = [
        field_name if model is Org else f"token__{field_name}"
        for _, model, field_name, _ in _ORG_COLUMNS + _TOKEN_COLUMNS
    ]
    row = Org.objects.filter(pk=org_id).values_list(*lookups).first()
    if row is None:
        return None
    return ApiOrgToken(**dict(zip(names, row, strict=True)), in_scope=in_scope)


def api_access_token(record: ApiOrgToken) -> str:
    """The record's access token in plaintext, through the field's own decryption.

    Raises EncryptionKeyError when no configured key decrypts it.
    """
    return record.access_token.open() if isinstance(record.access_token, Sealed) else ""


@dataclass(frozen=True)
class LegacyMatch:
    """What the legacy /api/token headers name, before the passphrase is checked."""

    callers: list[ApiCaller]  # active clients with this X-From that may read one of the orgs
    readable: dict[int, list[ApiOrgToken]]  # by caller id: the orgs it may read, with tokens


def api_legacy_lookup(*, provider_org_id: str, sender: str) -> LegacyMatch:
    """The legacy clients of an X-From, the orgs of a provider org id each may read, and
    their tokens, in one query.

    Cheap on purpose: the clients are found by X-From, not by trying each one's slow
    passphrase hash, so the caller checks one passphrase at most.
    """
    rows = _api_legacy_statement(connection.vendor).rows([provider_org_id, sender, True])
    callers: dict[int, ApiCaller] = {}
    readable: dict[int, list[ApiOrgToken]] = {}
    for row in rows:
        caller = callers.setdefault(row["id"], _caller(row))
        readable.setdefault(caller.id, []).append(_org_token(row))
    return LegacyMatch(callers=list(callers.values()), readable=readable)


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


@dataclass(frozen=True)
class Dashboard:
    """What the admin index shows: where things stand and what needs a human."""

    status_counts: list[tuple[str, str, int]]  # status, its label, how many orgs
    needs_reconnect: list[Org]
    pending: list[Org]  # not connected yet: an operator has to press Connect
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
        pending=list(
            Org.objects.filter(status=Org.Status.PENDING).order_by("name")[:DASHBOARD_LIST_LIMIT]
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
