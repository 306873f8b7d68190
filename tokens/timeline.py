"""The expiry timeline on the dashboard: an SVG drawn on the server, no script, no CDN.

One row per org: a bar from now to when its access token expires, a diamond when its
refresh token expires, and a tick when the next refresh is planned. Times past the
horizon are drawn at its edge with an arrow; each mark has a tooltip with the exact time.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils.html import format_html, mark_safe
from django.utils.safestring import SafeString

LABEL_WIDTH = 190
CHART_WIDTH = 640
ROW_HEIGHT = 22
TOP = 44
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
    """The timeline of `rows` as an inline SVG element."""
    horizon = horizon_for(rows, now)
    height = TOP + ROW_HEIGHT * max(len(rows), 1) + 8
    width = LABEL_WIDTH + CHART_WIDTH + 20

    def x(moment: datetime) -> float:
        share = (moment - now) / horizon
        return LABEL_WIDTH + CHART_WIDTH * min(max(share, 0.0), 1.0)

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="expiry-timeline" width="{}" '
            'height="{}" viewBox="0 0 {} {}" role="img" aria-label="Token expiry timeline" '
            'font-family="sans-serif" font-size="12">',
            width,
            height,
            width,
            height,
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
                '<rect x="{}" y="4" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="13">{}</text>',
                LABEL_WIDTH + i * 170,
                COLOURS[key],
                LABEL_WIDTH + i * 170 + 14,
                text,
            )
            for i, (key, text) in enumerate(items)
        )
    )


def _ticks(now: datetime, horizon: timedelta, height: int, x) -> list[SafeString]:
    step = next((s for s in _TICK_STEPS if horizon / s <= 10), _TICK_STEPS[-1])
    label = "%d %b %H:%M" if step < timedelta(days=1) else "%d %b"
    ticks, moment = [], now
    while moment <= now + horizon:
        ticks.append(
            format_html(
                '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#ddd"/>'
                '<text x="{0}" y="{3}" fill="#666" font-size="10">{4}</text>',
                round(x(moment), 1),
                TOP - 6,
                height - 4,
                TOP - 10,
                moment.strftime(label),
            )
        )
        moment += step
    return ticks


def _row(row: TimelineRow, top: int, now: datetime, horizon: timedelta, x) -> SafeString:
    middle = top + ROW_HEIGHT / 2
    url = reverse("admin:tokens_org_change", args=[row.org_id])
    parts = [
        format_html(
            '<g class="timeline-row" data-org="{}"><a href="{}"><text x="4" y="{}">{}</text></a>',
            row.org_id,
            url,
            middle + 4,
            row.name[:28],
        )
    ]
    if row.access_expires_at:
        late = row.access_expires_at <= now
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="8" fill="{}" opacity="0.7">'
                "<title>access token expires {}</title></rect>",
                LABEL_WIDTH,
                middle - 4,
                max(round(x(row.access_expires_at) - LABEL_WIDTH, 1), 2),
                COLOURS["late" if late else "access"],
                _when(row.access_expires_at, now, horizon),
            )
        )
    if row.refresh_expires_at:
        cx = round(x(row.refresh_expires_at), 1)
        parts.append(
            format_html(
                '<path d="M{} {} l5 5 l-5 5 l-5 -5 z" fill="{}">'
                "<title>refresh token expires {}</title></path>",
                cx,
                middle - 5,
                COLOURS["refresh"],
                _when(row.refresh_expires_at, now, horizon),
            )
        )
    if row.next_refresh_at:
        parts.append(
            format_html(
                '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{3}" stroke-width="3">'
                "<title>next refresh {4}</title></line>",
                round(x(row.next_refresh_at), 1),
                middle - 8,
                middle + 8,
                COLOURS["next"],
                _when(row.next_refresh_at, now, horizon),
            )
        )
    parts.append(mark_safe("</g>"))
    return mark_safe("".join(parts))  # noqa: S308  (every part is format_html-escaped)


def _when(moment: datetime, now: datetime, horizon: timedelta) -> str:
    text = moment.strftime("%Y-%m-%d %H:%M UTC")
    if moment <= now:
        return f"{text} (past)"
    return f"{text} (beyond the chart →)" if moment > now + horizon else text
