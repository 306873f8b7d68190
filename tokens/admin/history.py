"""The audit side of the admin: token history (filter, search, CSV export), the events
inline on an org's page, and Django's own change log. Read-only for everyone.

The history list costs the same at a thousand events or millions: it counts at most
HISTORY_COUNT_CAP rows ("10,000+"), never all of them; every filter and the default order
read an index of TokenEvent in order and stop after a page; and the filters list their
choices from the enums and the Org table, never from a DISTINCT over the history.
"""

import csv
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cached_property

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.core.paginator import Paginator
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from tokens import clock, display
from tokens.models import Org, TokenEvent

EXPORT_COLUMNS = [
    "created_at", "org_slug", "kind", "trigger", "outcome", "actor", "http_status",
    "error_code", "message", "access_expires_at", "refresh_expires_at",
    "access_fingerprint", "refresh_fingerprint", "token_version", "duration_ms",
]  # fmt: skip
# A cell starting with one of these is a formula to a spreadsheet (CSV injection); the
# full-width forms are read as formulas by some East Asian spreadsheet settings.
_FORMULA_STARTS = "=+-@\t\r\0\uff1d\uff0b\uff0d\uff20"
# Where a spreadsheet may start a cell inside our text: at its start, and after whatever
# its locale takes as separator (`;`, tab, `|`) or a line break: a reader that takes a
# quote in the middle of a field literally (Python's csv does; spreadsheets differ) splits
# a quoted comma-separated cell at its `;` when told to use `;`. Leading spaces and quotes
# are skipped, as a spreadsheet that trims them would.
_CELL_START = re.compile(rf"(^|[,;|\t\r\n])(?=[\s\"']*[{re.escape(_FORMULA_STARTS)}])")


class ReadOnlyMixin:
    """No add, change or delete for anyone, superusers included."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A read-only model admin: lists and detail pages only."""


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet will show as text, never run as a formula.

    A `'` goes before every place where a cell could start with a formula character.
    """
    text = "" if value is None else str(value)
    return _CELL_START.sub(r"\1'", text)


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows(events: Iterable[TokenEvent]) -> Iterable[str]:
    """The CSV lines of an export: a header, then one line per event, every cell quoted."""
    # Quoted cells keep a separator of any locale (`,`, `;`, tab, `|`) inside their cell.
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(EXPORT_COLUMNS)
    for event in events:
        cells = [csv_cell(_csv_value(getattr(event, name))) for name in EXPORT_COLUMNS]
        yield writer.writerow(cells)


def _csv_value(value: object) -> object:
    """Datetimes in ISO 8601 UTC to the second: no microseconds in the export."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return value


HISTORY_COUNT_CAP = 10_000
# Past this many orgs the org filter lists only the chosen one: pick an org from its page
# ("all events" link) or search by slug.
ORG_FILTER_MAX_CHOICES = 100


class CappedCountPaginator(Paginator):
    """Counts at most HISTORY_COUNT_CAP + 1 rows: past the cap, the list says "10,000+"."""

    @cached_property
    def count(self) -> int:
        """The number of rows, or HISTORY_COUNT_CAP + 1 when there are more."""
        return self.object_list.order_by()[: HISTORY_COUNT_CAP + 1].count()

    @property
    def capped(self) -> bool:
        """Whether there are more rows than were counted."""
        return self.count > HISTORY_COUNT_CAP

    @property
    def cap_display(self) -> str:
        """How the pages name a capped count."""
        return f"{HISTORY_COUNT_CAP:,}+"


class OrgListFilter(admin.RelatedFieldListFilter):
    """Orgs from the Org table (RelatedOnlyFieldListFilter would scan the history)."""

    def field_choices(self, field, request, model_admin) -> list[tuple[int, str]]:
        orgs = Org.objects.order_by("name").values_list("pk", "name")
        if Org.objects.count() > ORG_FILTER_MAX_CHOICES:
            orgs = orgs.filter(pk__in=[v for v in self.lookup_val or [] if v.isdigit()])
        return list(orgs)


class TokenEventAdmin(ReadOnlyAdmin):
    """The append-only token history."""

    # What fits at 1280 px without scrolling; fingerprints, version, duration and the message
    # are on the event's page. The HTTP column holds the status and the error code, if any.
    list_display = [
        "when", "org_link", "kind", "trigger", "outcome", "actor", "http",
    ]  # fmt: skip
    list_filter = [("org", OrgListFilter), "kind", "trigger", "outcome", "created_at"]
    search_fields = ["org_slug", "=access_fingerprint", "=refresh_fingerprint", "error_code"]
    list_select_related = ["actor", "org"]
    # No date_hierarchy: its year and month links are a DISTINCT over the whole history.
    # The created_at filter's choices (today, past 7 days, ...) cost nothing.
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a facet is a count over the history per choice
    actions = ["export_csv"]

    @admin.display(description="when", ordering="created_at")
    def when(self, event: TokenEvent) -> str:
        return display.when(event.created_at)

    @admin.display(description="HTTP / error", ordering="http_status", empty_value="")
    def http(self, event: TokenEvent) -> object:
        return " ".join(str(part) for part in (http_status_shown(event), event.error_code) if part)

    def get_fields(self, request: HttpRequest, obj: TokenEvent | None = None) -> list[str]:
        """The event's page: no "HTTP status" row when no HTTP status was recorded."""
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.http_status is None:
            fields = [f for f in fields if f != "http_status"]
        return fields

    @admin.display(description="org", ordering="org_slug")
    def org_link(self, event: TokenEvent) -> str:
        if event.org_id is None:
            return event.org_slug or "—"
        url = reverse("admin:tokens_org_change", args=[event.org_id])
        return format_html('<a href="{}">{}</a>', url, event.org_slug)

    @admin.action(description="Export selected events as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset) -> StreamingHttpResponse:
        """Stream the selected events (all of a filtered list with "select all") as CSV."""
        events = queryset.select_related("actor").order_by("created_at", "id").iterator()
        response = StreamingHttpResponse(csv_rows(events), content_type="text/csv")
        stamp = clock.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="token-history-{stamp}.csv"'
        return response


class RecentEventsInline(ReadOnlyMixin, admin.TabularInline):
    """The org's latest token events, on its page."""

    model = TokenEvent
    fields = ["when", "kind", "trigger", "outcome", "actor", "http", "error_code", "message"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    max_num = 0
    show_change_link = False
    can_delete = False
    verbose_name_plural = "latest token events"
    shown = 10

    @admin.display(description="when")
    def when(self, event: TokenEvent) -> str:
        return display.when(event.created_at)

    @admin.display(description="HTTP", empty_value="")
    def http(self, event: TokenEvent) -> object:
        return http_status_shown(event)

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("actor")
        org_id = request.resolver_match.kwargs.get("object_id")
        latest = queryset.filter(org_id=org_id).values_list("pk", flat=True)[: self.shown]
        return queryset.filter(pk__in=list(latest))


def http_status_shown(event: TokenEvent) -> object:
    """The event's HTTP status, or nothing when none was recorded (never a lone "-")."""
    return "" if event.http_status is None else event.http_status


def history_url(org: Org) -> str:
    """The full token history of one org."""
    return reverse("admin:tokens_tokenevent_changelist") + f"?org__id__exact={org.pk}"


class LogEntryAdmin(ReadOnlyAdmin):
    """Django's change log — who changed an integration, connected or disconnected an org."""

    list_display = ["when", "user", "content_type", "object_repr", "action", "change"]
    list_filter = ["action_flag", "content_type", "action_time"]
    search_fields = ["object_repr", "change_message", "user__username"]
    list_select_related = ["user", "content_type"]
    date_hierarchy = "action_time"

    @admin.display(description="when", ordering="action_time")
    def when(self, entry: LogEntry) -> str:
        return display.when(entry.action_time)

    @admin.display(description="action", ordering="action_flag")
    def action(self, entry: LogEntry) -> str:
        return {1: "added", 2: "changed", 3: "deleted"}.get(entry.action_flag, "?")

    @admin.display(description="change")
    def change(self, entry: LogEntry) -> str:
        return entry.get_change_message()
