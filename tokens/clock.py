"""The one place that reads the clock, so tests can move time."""

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

_now: Callable[[], datetime] = timezone.now


def now() -> datetime:
    """Return the current aware datetime from the injected clock."""
    return _now()


def set_clock(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); None restores the real one."""
    global _now
    _now = source or timezone.now
