"""Failed API authentications per source address: 429 once there were too many.

The counts live in the "api_throttle" cache, which every process shares: Redis when it
is configured, else a database table (tokens.cache). So that a good request does not pay
a cache round trip, each process remembers which addresses it has itself seen fail, and
asks the cache only about those. An address failing everywhere is therefore blocked at
most one failure per web process late.
"""

import threading
import time

from django.core.cache import caches

from ..conf import app_settings

_MAX_REMEMBERED = 10_000
# The alias in settings.CACHES that holds the counts.
THROTTLE_CACHE = "api_throttle"


class AuthFailureThrottle:
    """Counts failed authentications per address within API_AUTH_FAILURE_WINDOW."""

    def __init__(self) -> None:
        self._seen_failing: dict[str, float] = {}  # address -> monotonic time to forget it
        self._lock = threading.Lock()

    def blocked(self, address: str | None) -> bool:
        """Whether the address has failed API_AUTH_FAILURE_LIMIT times within the window."""
        name = address or "unknown"
        forget_at = self._seen_failing.get(name)
        if forget_at is None:
            return False
        if forget_at < time.monotonic():
            self._seen_failing.pop(name, None)
            return False
        counts = caches[THROTTLE_CACHE]
        return counts.get(self._cache_key(name), 0) >= app_settings.API_AUTH_FAILURE_LIMIT

    def failed(self, address: str | None) -> None:
        """Count one failed authentication from the address."""
        name = address or "unknown"
        window = app_settings.API_AUTH_FAILURE_WINDOW
        key = self._cache_key(name)
        counts = caches[THROTTLE_CACHE]
        if not counts.add(key, 1, timeout=window):
            try:
                counts.incr(key)  # atomic, and keeps the window's end
            except ValueError:  # it expired between add and incr
                counts.add(key, 1, timeout=window)
        with self._lock:
            if len(self._seen_failing) >= _MAX_REMEMBERED:
                now = time.monotonic()
                self._seen_failing = {a: t for a, t in self._seen_failing.items() if t > now}
                if len(self._seen_failing) >= _MAX_REMEMBERED:
                    self._seen_failing.clear()  # many addresses failing: start over
            self._seen_failing[name] = time.monotonic() + window

    @staticmethod
    def _cache_key(name: str) -> str:
        return f"tokens:api-auth-failures:{name}"


auth_failures = AuthFailureThrottle()
