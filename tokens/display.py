"""How the console shows a moment: relative ("in 13 days", "2 h ago"), exact in a tooltip.

One helper for every list, detail page and the dashboard, so times read the same way
everywhere: the exact time is in settings.TIME_ZONE, to the second, never with
microseconds; the relative wording is measured from tokens.clock.now(), so tests can move it.
"""

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tokens import clock

EXACT_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
EMPTY = "—"


def exact(moment: datetime) -> str:
    """The exact time in the configured TIME_ZONE, to the second: "2025-03-04 14:05:09 UTC"."""
    return timezone.localtime(moment).strftime(EXACT_FORMAT)


def relative(moment: datetime, now: datetime | None = None) -> str:
    """How far `moment` is from now, in words: "in 13 days", "2 h ago", "just now"."""
    delta = moment - (now or clock.now())
    span = abs(delta)
    if span < timedelta(minutes=1):
        return "just now"
    if span < timedelta(hours=1):
        amount = f"{span // timedelta(minutes=1)} min"
    elif span < timedelta(hours=48):
        amount = f"{span // timedelta(hours=1)} h"
    else:
        days = span // timedelta(days=1)
        amount = f"{days} day{'' if days == 1 else 's'}"
    return f"in {amount}" if delta > timedelta(0) else f"{amount} ago"


def when(moment: datetime | None, now: datetime | None = None) -> SafeString | str:
    """A <time> element: the relative wording, the exact time as its tooltip; "—" for none."""
    if moment is None:
        return EMPTY
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.astimezone(timezone.get_fixed_timezone(0)).isoformat(timespec="seconds"),
        exact(moment),
        relative(moment, now),
    )
