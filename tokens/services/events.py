"""The token history: every service records what it did through token_event_record.

Each event is added to its running totals (TokenEventRollup) in the same transaction, so
/metrics reads totals that match the history without reading the history.
"""

from functools import cache

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction

from tokens import clock
from tokens.exceptions import ProviderError
from tokens.models import Org, Token, TokenEvent, TokenEventRollup

# The longest message an event holds (its column's); a longer one is cut to fit.
MESSAGE_MAX_LENGTH = TokenEvent._meta.get_field("message").max_length


def acting_user(actor: AbstractBaseUser | None) -> AbstractBaseUser | None:
    """The user to store as the actor: None for no user or an anonymous one."""
    return actor if actor is not None and actor.is_authenticated else None


def token_event_record(
    *,
    org: Org | None,
    kind: str,
    trigger: str,
    outcome: str,
    actor: AbstractBaseUser | None = None,
    token: Token | None = None,
    error: ProviderError | None = None,
    message: str = "",
    error_code: str = "",
    duration_ms: int | None = None,
) -> TokenEvent:
    """Append one line to the token history. Only fingerprints and expiries are kept."""
    event = TokenEvent(
        org=org,
        org_slug=org.slug if org else "",
        kind=kind,
        trigger=trigger,
        outcome=outcome,
        actor=acting_user(actor),
        created_at=clock.now(),
        message=(message or (str(error) if error else ""))[:MESSAGE_MAX_LENGTH],
        error_code=error_code,
        duration_ms=duration_ms,
    )
    if error is not None:
        event.http_status = error.http_status
        event.error_code = error_code or error.error_code
        if error.description:
            said = f"{event.message} Provider said: {error.description}"
            event.message = said[:MESSAGE_MAX_LENGTH]
    if token is not None:
        event.access_expires_at = token.access_expires_at
        event.refresh_expires_at = token.refresh_expires_at
        event.access_fingerprint = token.access_fingerprint
        event.refresh_fingerprint = token.refresh_fingerprint
        event.token_version = token.version
    # Without a savepoint: inside a caller's transaction this adds two statements, no more.
    with transaction.atomic(savepoint=False):
        event.save()
        _rollup_add(event)
    return event


def _rollup_add(event: TokenEvent) -> None:
    """Add one event to its totals: one upsert, last in the transaction, so the row lock
    it takes is held only until the commit."""
    duration = event.duration_ms
    added = [1, int(duration is not None), duration or 0] + [
        int(duration is not None and duration <= bound)
        for bound, _ in TokenEventRollup.bucket_fields()
    ]
    with connection.cursor() as cursor:
        keys = [str(event.kind), str(event.trigger), str(event.outcome)]
        cursor.execute(_rollup_add_sql(), [*keys, *added])


@cache
def _rollup_add_sql() -> str:
    """INSERT ... ON CONFLICT DO UPDATE adding to each total (SQLite 3.24+, PostgreSQL 9.5+).

    Two workers recording the same kind at once both add: the second waits for the
    first's row lock (PostgreSQL) or write lock (SQLite), then adds to the committed row.
    The ORM's update-then-create would need a savepoint and a retry to be as safe.
    """
    quote = connection.ops.quote_name
    table = quote(TokenEventRollup._meta.db_table)
    keys = [quote(name) for name in ("kind", "trigger", "outcome")]
    totals = [quote(name) for name in ("count", "timed", "duration_ms_sum")] + [
        quote(name) for _, name in TokenEventRollup.bucket_fields()
    ]
    columns = ", ".join(keys + totals)
    placeholders = ", ".join(["%s"] * (len(keys) + len(totals)))
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in totals)
    # Only names from the model are formatted in; values are parameters.
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
