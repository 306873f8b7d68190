"""A database cache whose counters every process shares, for the token API's throttle.

Django's DatabaseCache.incr reads the value and writes it back with the default timeout:
two processes can both read n and write n + 1, and every failure restarts the window.
Here incr updates the row in place, in one transaction with the row locked (SQLite's
IMMEDIATE transactions take the write lock at BEGIN; PostgreSQL takes a row lock), and
leaves its expiry alone.
"""

import base64
import pickle
from typing import Any

from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router, transaction
from django.utils.timezone import now


class CountingDatabaseCache(DatabaseCache):
    """DatabaseCache with an atomic incr that keeps the key's expiry."""

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        """Add delta to a live key's value; ValueError when the key is missing or expired."""
        db_key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        table = connection.ops.quote_name(self._table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        # As DatabaseCache.has_key compares: whole seconds, naive (stored that way).
        current = now().replace(microsecond=0, tzinfo=None)
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT value FROM {table} WHERE cache_key = %s AND expires > %s{lock}",  # noqa: S608 (table name from settings)
                [db_key, connection.ops.adapt_datetimefield_value(current)],
            )
            row = cursor.fetchone()
            if row is None:
                raise ValueError(f"Key {key!r} not found")
            # The same encoding as DatabaseCache: pickled, base64, in this cache's own table.
            value = pickle.loads(base64.b64decode(row[0].encode())) + delta  # noqa: S301
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(
                f"UPDATE {table} SET value = %s WHERE cache_key = %s",  # noqa: S608
                [encoded, db_key],
            )
        return value
