"""Retry-After as the provider and webhook receivers send it, read strictly and capped.

RFC 9110 10.2.3 allows delta-seconds (ASCII digits) or an HTTP date. Anything else is
ignored: float() would take "inf", "nan", "1e400" and " 7 ", and str.isdigit() takes "²".
Every value is capped by the caller's maximum, so a huge number or a date in year 9999
neither overflows a timedelta nor postpones a retry for ever.
"""

import re
from datetime import UTC
from email.utils import parsedate_to_datetime

from . import clock

_DELTA_SECONDS = re.compile(r"[0-9]+")


def retry_after_seconds(raw: str | None, *, maximum: float) -> float | None:
    """Seconds a Retry-After value asks to wait, at most `maximum`; None when malformed."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if _DELTA_SECONDS.fullmatch(raw):
        # Compared as an int: float() of a 400-digit number is inf.
        return float(min(int(raw), maximum))
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year past C's int
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - clock.now()).total_seconds()), maximum)
