"""The expiry timeline on the dashboard: an SVG drawn on the server, no script, no CDN.

One row per org: a bar from now to when its access token expires, a dot when its
refresh token expires, and a tick when the next refresh is planned. Times past the
horizon are drawn at its edge with an arrow; each mark has a tooltip with the exact time.
Its colours of text and lines follow the admin's theme (the dashboard's CSS).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, mark_safe
from django.utils.safestring import SafeString

from tokens import display

# The SVG is as wide as its column (width 100%) and is never scaled: text keeps its size
# (12 px) at any width, and x positions are shares of the width. Names take the first
# LABEL_SHARE percent (clipped there), the chart runs from CHART_START for CHART_SHARE.
LABEL_SHARE = 27
CHART_START = 28
CHART_SHARE = 70
ROW_HEIGHT = 24
TOP = 48
FONT_PX = 12
MAX_HORIZON = timedelta(days=120)
_TICK_STEPS = [
    timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=7),
    timedelta(days=30),
]  # fmt: skip
COLOURS = {"access": "#1565c0", "refresh": "#ef6c00", "next": "#2e7d32", "late": "#c62828"}


@dataclass(frozen=True)
class TimelineRow:
    """What the timeline shows of one org."""

    org_id: int
    name: str
    status: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    next_refresh_at: datetime | None


def horizon_for(rows: list[TimelineRow], now: datetime) -> timedelta:
    """Long enough for the latest expiry, at least a day, at most MAX_HORIZON."""
    latest = max(
        (t for r in rows for t in (r.access_expires_at, r.refresh_expires_at) if t),
        default=now + timedelta(days=1),
    )
    return min(max(latest - now, timedelta(days=1)) * 1.05, MAX_HORIZON)


def expiry_timeline_svg(rows: list[TimelineRow], *, now: datetime) -> SafeString:
    """The timeline of `rows` as an inline SVG element, as wide as its container."""
    horizon = horizon_for(rows, now)
    height = TOP + ROW_HEIGHT * max(len(rows), 1) + 8

    def x(moment: datetime) -> float:
        share = (moment - now) / horizon
        return round(CHART_START + CHART_SHARE * min(max(share, 0.0), 1.0), 2)

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="expiry-timeline" width="100%" '
            'height="{}" role="img" aria-label="Token expiry timeline" '
            'font-family="sans-serif" font-size="{}">'
            '<defs><clipPath id="timeline-labels"><rect x="0" y="0" width="{}%" height="100%"/>'
            "</clipPath></defs>",
            height,
            FONT_PX,
            LABEL_SHARE,
        ),
        _legend(),
        *_ticks(now, horizon, height, x),
    ]
    for index, row in enumerate(rows):
        parts.append(_row(row, TOP + index * ROW_HEIGHT, now, horizon, x))
    if not rows:
        parts.append(format_html('<text x="{}" y="{}">No connected org yet.</text>', 8, TOP + 14))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # noqa: S308  (every part is format_html-escaped)


def _legend() -> SafeString:
    items = [("access", "access token expires"), ("refresh", "refresh token expires"),
             ("next", "next refresh")]  # fmt: skip
    return mark_safe(  # noqa: S308  (built from format_html parts)
        "".join(
            format_html(
                '<rect x="{}" y="5" width="10" height="10" fill="{}"/>'
                '<text class="legend" x="{}" y="14">{}</text>',
                4 + i * 170,
                COLOURS[key],
                4 + i * 170 + 14,
                text,
            )
            for i, (key, text) in enumerate(items)
        )
    )


def _ticks(now: datetime, horizon: timedelta, height: int, x) -> list[SafeString]:
    step = next((s for s in _TICK_STEPS if horizon / s <= 6), _TICK_STEPS[-1])
    label = "%d %b %H:%M" if step < timedelta(days=1) else "%d %b"
    ticks, moment = [], now
    while moment <= now + horizon:
        ticks.append(
            format_html(
                '<line class="tick" x1="{0}%" y1="{1}" x2="{0}%" y2="{2}" stroke="#ddd"/>'
                '<text class="tick" x="{0}%" y="{3}" fill="#666" font-size="11" '
                'text-anchor="middle">{4}</text>',
                x(moment),
                TOP - 6,
                height - 4,
                TOP - 10,
                timezone.localtime(moment).strftime(label),
            )
        )
        moment += step
    return ticks


def _row(row: TimelineRow, top: int, now: datetime, horizon: timedelta, x) -> SafeString:
    middle = top + ROW_HEIGHT / 2
    url = reverse("admin:tokens_org_change", args=[row.org_id])
    parts = [
        format_html(
            '<g class="timeline-row" data-org="{}"><a href="{}">'
            '<text x="4" y="{}" clip-path="url(#timeline-labels)">{}<title>{}</title></text></a>',
            row.org_id,
            url,
            middle + 4,
            row.name[:40],
            row.name,
        )
    ]
    if row.access_expires_at:
        late = row.access_expires_at <= now
        parts.append(
            format_html(
                '<rect x="{}%" y="{}" width="{}%" height="8" fill="{}" opacity="0.7">'
                "<title>access token expires {}</title></rect>",
                CHART_START,
                middle - 4,
                max(round(x(row.access_expires_at) - CHART_START, 2), 0.3),
                COLOURS["late" if late else "access"],
                _when(row.access_expires_at, now, horizon),
            )
        )
    if row.refresh_expires_at:
        parts.append(
            format_html(
                '<circle cx="{}%" cy="{}" r="5.5" fill="{}">'
                "<title>refresh token expires {}</title></circle>",
                x(row.refresh_expires_at),
                middle,
                COLOURS["refresh"],
                _when(row.refresh_expires_at, now, horizon),
            )
        )
    if row.next_refresh_at:
        parts.append(
            format_html(
                '<line x1="{0}%" y1="{1}" x2="{0}%" y2="{2}" stroke="{3}" stroke-width="3">'
                "<title>next refresh {4}</title></line>",
                x(row.next_refresh_at),
                middle - 8,
                middle + 8,
                COLOURS["next"],
                _when(row.next_refresh_at, now, horizon),
            )
        )
    parts.append(mark_safe("</g>"))
    return mark_safe("".join(parts))  # noqa: S308  (every part is format_html-escaped)


def _when(moment: datetime, now: datetime, horizon: timedelta) -> str:
    text = f"{display.relative(moment, now)} ({display.exact(moment)})"
    return f"{text}, beyond the chart →" if moment > now + horizon else text
