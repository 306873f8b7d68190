"""Org admin: state at a glance, Connect, Refresh now, Disconnect; never a token value."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from tokens import display, services
from tokens.exceptions import (
    DisconnectInProgress,
    OrgNotConnected,
    OrgNotRefreshable,
    OrgReconnected,
    RefreshInProgress,
)
from tokens.models import Org, TokenEvent

from .api_client import served_link
from .history import RecentEventsInline, history_url

# The token's read-only fields, shown once the org holds a token.
TOKEN_FIELDS = [
    "access_expires",
    "refresh_expires",
    "next_refresh",
    "token_version",
    "access_fingerprint",
    "refresh_fingerprint",
]
# One source for the status colours: the badges here and the dashboard's cards.
STATUS_COLOURS = {
    Org.Status.PENDING: "#777",
    Org.Status.CONNECTED: "#2e7d32",
    Org.Status.NEEDS_RECONNECT: "#c62828",
    Org.Status.DISABLED: "#555",
}


class OrgAdmin(admin.ModelAdmin):
    """Customer orgs: state at a glance, the Connect button, never a token value."""

    change_form_template = "admin/tokens/org/change_form.html"
    # What fits at 1280 px without scrolling; the integration, slug and provider org are on
    # the org's page (and the integration is a filter).
    list_display = [
        "name",
        "status_badge",
        "access_expires",
        "refresh_expires",
        "next_refresh",
    ]
    list_filter = ["status", "integration"]
    search_fields = ["name", "slug", "provider_org_id"]
    list_select_related = ["integration", "token"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["refresh_selected", "disconnect_selected"]
    inlines = [RecentEventsInline]
    fields = [
        "name",
        "slug",
        "integration",
        "status_badge",
        "status_reason",
        "provider_org_id",
        "cluster_id",
        "connected",
        "access_expires",
        "refresh_expires",
        "next_refresh",
        "token_version",
        "access_fingerprint",
        "refresh_fingerprint",
        "served_24h",
        "history",
    ]
    # Everything but what an operator types is shown, never edited here.
    readonly_fields = [
        name for name in fields if name not in ("name", "slug", "integration", "provider_org_id")
    ]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Org) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="access expires", ordering="token__access_expires_at")
    def access_expires(self, obj: Org) -> object:
        return display.when(_token_attr(obj, "access_expires_at", None))

    @admin.display(description="refresh expires", ordering="token__refresh_expires_at")
    def refresh_expires(self, obj: Org) -> object:
        return display.when(_token_attr(obj, "refresh_expires_at", None))

    @admin.display(description="next refresh", ordering="token__next_refresh_at")
    def next_refresh(self, obj: Org) -> object:
        return display.when(_token_attr(obj, "next_refresh_at", None))

    @admin.display(description="connected")
    def connected(self, obj: Org) -> object:
        if obj.connected_at is None:
            return display.EMPTY
        by = f" by {obj.connected_by}" if obj.connected_by_id else ""
        return format_html("{}{}", display.when(obj.connected_at), by)

    @admin.display(description="token version")
    def token_version(self, obj: Org) -> object:
        return _token_attr(obj, "version")

    @admin.display(description="access token fingerprint")
    def access_fingerprint(self, obj: Org) -> object:
        return _token_attr(obj, "access_fingerprint")

    @admin.display(description="refresh token fingerprint")
    def refresh_fingerprint(self, obj: Org) -> object:
        return _token_attr(obj, "refresh_fingerprint")

    @admin.display(description="tokens served by the API, last 24 h")
    def served_24h(self, obj: Org) -> str:
        return served_link(obj.served_counts, "org", obj.pk)

    @admin.display(description="token history")
    def history(self, obj: Org) -> str:
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">All events of this org</a>', history_url(obj))

    def get_fields(self, request: HttpRequest, obj: Org | None = None) -> list[str]:
        """Name, slug and integration to add an org; the token's fields once it holds one."""
        if obj is None:
            return ["name", "slug", "integration"]
        fields = list(super().get_fields(request, obj))
        if getattr(obj, "token", None) is None:
            fields = [f for f in fields if f not in TOKEN_FIELDS]
        return fields

    def get_inline_instances(self, request: HttpRequest, obj: Org | None = None) -> list:
        """No events inline on the add form: a new org has none."""
        return super().get_inline_instances(request, obj) if obj is not None else []

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """The page, with a warning when another org is bound to the same provider org."""
        org = self.get_object(request, object_id)
        twin = org.bound_elsewhere() if org is not None and request.method == "GET" else None
        if twin is not None:
            self.message_user(request, binding_twin_warning(org, twin), messages.WARNING)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_readonly_fields(self, request: HttpRequest, obj: Org | None = None) -> list[str]:
        """The integration too, once the org holds a token (Org.clean refuses the move)."""
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.integration_is_bound:
            fields.append("integration")
        return fields

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and request.user.has_perm("tokens.connect_org"):
            context["connect_url"] = reverse("tokens:oauth-connect", args=[obj.slug])
            context["connect_label"] = (
                "Connect" if obj.status == Org.Status.PENDING else "Reconnect"
            )
        may_refresh = self.has_refresh_permission(request)
        if obj is not None and obj.status == Org.Status.CONNECTED and may_refresh:
            context["refresh_url"] = reverse("admin:tokens_org_refresh", args=[obj.pk])
        if obj is not None and hasattr(obj, "token") and self.has_disconnect_permission(request):
            context["disconnect_url"] = reverse("admin:tokens_org_disconnect", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        refresh = self.admin_site.admin_view(require_POST(self.refresh_view))
        disconnect = self.admin_site.admin_view(self.disconnect_view)
        return [
            path("<int:org_id>/refresh/", refresh, name="tokens_org_refresh"),
            path("<int:org_id>/disconnect/", disconnect, name="tokens_org_disconnect"),
            *super().get_urls(),
        ]

    def refresh_view(self, request: HttpRequest, org_id: int) -> HttpResponseRedirect:
        """Refresh now: run the refresh at once and report the outcome."""
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        org = get_object_or_404(Org, pk=org_id)
        try:
            result = services.token_refresh(
                org_id=org.pk, trigger=TokenEvent.Trigger.MANUAL, actor=request.user,
                force=True, wait=True,
            )  # fmt: skip
        except OrgNotRefreshable as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{org}: {result.message}", level)
            self.log_change(request, org, f"Refresh now: {result.outcome}")
        return HttpResponseRedirect(reverse("admin:tokens_org_change", args=[org.pk]))

    @admin.action(description="Refresh selected orgs", permissions=["refresh"])
    def refresh_selected(self, request: HttpRequest, queryset) -> None:
        """Queue a manual refresh for each selected connected org."""
        selected = list(queryset.values_list("pk", flat=True))
        queued = services.refresh_dispatch(
            org_ids=selected, trigger=TokenEvent.Trigger.MANUAL, actor=request.user, force=True
        )
        skipped = len(selected) - len(queued)
        note = f" {skipped} not connected, skipped." if skipped else ""
        self.message_user(request, f"Queued a refresh for {len(queued)} org(s).{note}")

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.refresh_org")

    def disconnect_view(self, request: HttpRequest, org_id: int) -> HttpResponse:
        """Disconnect one org: a confirmation page, then the POST that does it."""
        if not self.has_disconnect_permission(request):
            raise PermissionDenied
        org = get_object_or_404(Org, pk=org_id)
        if request.method == "POST":
            self._disconnect(request, [org])
            return HttpResponseRedirect(reverse("admin:tokens_org_change", args=[org.pk]))
        return self._confirm_disconnect(request, [org])

    @admin.action(description="Disconnect selected orgs", permissions=["disconnect"])
    def disconnect_selected(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Like delete_selected: a confirmation page first, then disconnect each org."""
        orgs = list(queryset.filter(token__isnull=False))
        if not orgs:
            self.message_user(request, "None of the selected orgs holds a token.", messages.WARNING)
            return None
        if request.POST.get("confirmed") != "yes":
            return self._confirm_disconnect(request, orgs, action=True)
        self._disconnect(request, orgs)
        return None

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.disconnect_org")

    def _confirm_disconnect(
        self, request: HttpRequest, orgs: list[Org], *, action: bool = False
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Disconnect " + (orgs[0].name if len(orgs) == 1 else f"{len(orgs)} orgs"),
            "opts": self.opts,
            "orgs": orgs,
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/tokens/org/disconnect_confirmation.html", context)

    def _disconnect(self, request: HttpRequest, orgs: list[Org]) -> None:
        for org in orgs:
            try:
                result = services.org_disconnect(
                    org_id=org.pk, actor=request.user, trigger=TokenEvent.Trigger.MANUAL
                )
            except (
                OrgNotConnected,
                RefreshInProgress,
                DisconnectInProgress,
                OrgReconnected,
            ) as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            level = messages.SUCCESS if result.revoked else messages.WARNING
            self.message_user(request, f"{org}: {result.message}", level)
            self.log_change(request, org, "Disconnected.")


def _token_attr(org: Org, name: str, empty: object = "—") -> object:
    token = getattr(org, "token", None)
    value = getattr(token, name, None) if token is not None else None
    return empty if value in (None, "") else value


def status_badge(status: str, label: str) -> str:
    """A status as a coloured badge; the dashboard's cards take the same STATUS_COLOURS."""
    return format_html(
        '<span class="org-status org-status-{}" style="color:#fff;background:{};'
        'padding:2px 8px;border-radius:8px;white-space:nowrap">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#777"),
        label,
    )


def binding_twin_warning(org: Org, twin: Org) -> str:
    """What the page of an org says when another org is bound to its provider org."""
    return (
        f"Org '{twin.slug}' ({twin.get_status_display().lower()}) of this integration is bound "
        f"to the same provider org {org.provider_org_id}. The token API and the legacy "
        f"/api/token may serve either org's token for it: disconnect and delete one of them, "
        f"or clear its provider org id."
    )
