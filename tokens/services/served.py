"""Counting tokens served by the API, per org, client and hour, without a write per request.

Each process adds up its counts in memory; a background thread of the web process
writes them every API_SERVED_FLUSH_INTERVAL seconds, so no API request ever waits for
the write, and the process writes what is left when it exits — including a granian
worker stopped by SIGTERM, which ends through multiprocessing and skips `atexit`. A
process killed hard loses at most one interval's counts: these are usage figures, not
the audit trail.
"""

import atexit
import logging
import os
import threading
from collections import Counter
from datetime import datetime
from multiprocessing import util as multiprocessing_util

from django.db import DatabaseError, connection, transaction

from tokens import clock
from tokens.conf import app_settings
from tokens.models import ApiClient, Org, TokenServedCount

logger = logging.getLogger(__name__)

_Key = tuple[int, int, datetime]  # org id, client id, start of the hour

_lock = threading.Lock()
_pending: Counter[_Key] = Counter()
# The web server turns the background flush on (tokenconsole/wsgi.py); the thread is
# started by the first count in each process, so a forked worker gets its own.
_background = False
_flusher: tuple[int, threading.Thread, threading.Event] | None = None  # pid, thread, stop


def served_record(*, org_id: int, client_id: int) -> None:
    """Count one token served, in memory; the background flush writes it later."""
    hour = clock.now().replace(minute=0, second=0, microsecond=0)
    with _lock:
        _pending[(org_id, client_id, hour)] += 1
        if _background:
            _flusher_ensure()


def served_flush_in_background(enabled: bool = True) -> None:
    """Write served counts from a background thread of each process from now on
    (or, with enabled=False, stop this process's thread and write what it holds)."""
    global _background, _flusher
    with _lock:
        _background, flusher, _flusher = enabled, _flusher, None
    if not enabled and flusher is not None:
        flusher[2].set()
        flusher[1].join()
        served_flush()


def _flusher_ensure() -> None:
    """Start this process's flush thread unless it runs. The caller holds _lock."""
    global _flusher
    if _flusher is not None and _flusher[0] == os.getpid() and _flusher[1].is_alive():
        return
    stop = threading.Event()
    thread = threading.Thread(
        target=_flush_until, args=(stop,), name="served-counts-flush", daemon=True
    )
    _flusher = (os.getpid(), thread, stop)
    thread.start()


def _flush_until(stop: threading.Event) -> None:
    """The background thread: flush every interval, on a connection of its own."""
    while not stop.wait(app_settings.API_SERVED_FLUSH_INTERVAL):
        try:
            served_flush()
        finally:
            connection.close()  # this thread's connection; reopened at the next flush


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
# granian's workers are multiprocessing processes: they end with os._exit, which skips
# atexit, after running multiprocessing's finalizers.
multiprocessing_util.Finalize(None, served_flush, exitpriority=10)
