"""Counting tokens served by the API, per org, client and hour, without a write per request.

Each process adds up its counts in memory and writes them at most every
API_SERVED_FLUSH_INTERVAL seconds (and when it exits). A process killed hard loses at
most that interval's counts: these are usage figures, not the audit trail.
"""

import atexit
import logging
import threading
import time
from collections import Counter
from datetime import datetime

from django.db import DatabaseError, connection, transaction

from tokens import clock
from tokens.conf import app_settings
from tokens.models import ApiClient, Org, TokenServedCount

logger = logging.getLogger(__name__)

_Key = tuple[int, int, datetime]  # org id, client id, start of the hour

_lock = threading.Lock()
_pending: Counter[_Key] = Counter()
_last_flush = time.monotonic()


def served_record(*, org_id: int, client_id: int) -> None:
    """Count one token served; write the counts out when the flush interval has passed."""
    global _last_flush
    hour = clock.now().replace(minute=0, second=0, microsecond=0)
    with _lock:
        _pending[(org_id, client_id, hour)] += 1
        if time.monotonic() - _last_flush < app_settings.API_SERVED_FLUSH_INTERVAL:
            return
        _last_flush = time.monotonic()
    served_flush()


def served_flush() -> int:
    """Add the counts held in memory to the database; return how many rows were written."""
    with _lock:
        batch = dict(_pending)
        _pending.clear()
    if not batch:
        return 0
    try:
        with transaction.atomic():
            _add_all(_still_owned(batch))
    except DatabaseError:
        logger.warning("could not store served-token counts; keeping them for the next flush")
        with _lock:
            _pending.update(batch)
        return 0
    return len(batch)


def _still_owned(batch: dict[_Key, int]) -> dict[_Key, int]:
    """Drop the counts of orgs or clients deleted meanwhile: they have nowhere to go."""
    org_ids = set(Org.objects.filter(pk__in={k[0] for k in batch}).values_list("pk", flat=True))
    client_ids = set(
        ApiClient.objects.filter(pk__in={k[1] for k in batch}).values_list("pk", flat=True)
    )
    return {k: n for k, n in batch.items() if k[0] in org_ids and k[1] in client_ids}


def _add_all(batch: dict[_Key, int]) -> None:
    """One upsert for the whole batch: add each count to its row, creating missing rows."""
    table = connection.ops.quote_name(TokenServedCount._meta.db_table)
    hour_field = TokenServedCount._meta.get_field("hour")
    # Sorted: two processes flushing the same rows lock them in one order, never a deadlock.
    rows = [
        (org_id, client_id, hour_field.get_db_prep_value(hour, connection), count)
        for (org_id, client_id, hour), count in sorted(batch.items())
    ]
    with connection.cursor() as cursor:
        # ON CONFLICT ... DO UPDATE: SQLite 3.24+ and PostgreSQL 9.5+. The ORM's
        # bulk_create(update_conflicts=True) can only overwrite a count, not add to it.
        cursor.executemany(
            f"INSERT INTO {table} (org_id, client_id, hour, count) VALUES (%s, %s, %s, %s) "  # noqa: S608
            "ON CONFLICT (org_id, client_id, hour) "
            f"DO UPDATE SET count = {table}.count + excluded.count",
            rows,
        )


atexit.register(served_flush)
