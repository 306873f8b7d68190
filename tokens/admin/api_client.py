"""Admin for the token API: API clients (the key is shown once) and tokens-served counts."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from tokens import clock, display, services
from tokens.models import ApiClient, Org

from .history import ReadOnlyAdmin


def served_link(counts: QuerySet, field: str, pk: int | None) -> str:
    """The tokens served in the last 24 h, linked to the hourly counts behind the figure."""
    if pk is None:
        return "—"
    since = clock.now() - timedelta(hours=24)
    total = counts.filter(hour__gte=since).aggregate(n=Sum("count"))["n"] or 0
    url = reverse("admin:tokens_tokenservedcount_changelist") + f"?{field}__id__exact={pk}"
    return format_html('<a href="{}">{}</a>', url, total)


def _readable_slug(client: ApiClient) -> str:
    """An org slug this client may read, for the example curl line (ORG-SLUG when none)."""
    orgs = Org.objects.all() if client.all_orgs else client.orgs.all()
    return orgs.order_by("name").values_list("slug", flat=True).first() or "ORG-SLUG"


class RevokedFilter(admin.SimpleListFilter):
    """Revoked: yes / no."""

    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


class ApiClientForm(forms.ModelForm):
    """The legacy passphrase is write-only: never rendered back; blank keeps the stored one.

    The services validate; the form shows their errors. Saving goes through the services
    too (ApiClientAdmin.save_model), as the create_api_client command does.
    """

    legacy_passphrase = forms.CharField(
        label="Legacy passphrase (X-API-Phrase header)",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only; stored as a salted hash. Leave blank to keep the stored one.",
    )

    class Meta:
        model = ApiClient
        fields = ["name", "all_orgs", "orgs", "allowed_networks", "legacy_from"]

    def clean(self) -> dict:
        cleaned = super().clean()
        try:
            services.api_client_rules_check(
                legacy_from=cleaned.get("legacy_from") or "",
                legacy_passphrase=cleaned.get("legacy_passphrase") or "",
                passphrase_stored=bool(self.instance.legacy_passphrase_hash),
                all_orgs=bool(cleaned.get("all_orgs")),
                orgs=list(cleaned.get("orgs") or []),
                exclude_pk=self.instance.pk,
            )
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned

    def service_fields(self) -> dict:
        """The cleaned values as the api_client_create / api_client_update keywords."""
        names = ["name", "all_orgs", "orgs", "allowed_networks", "legacy_from"]
        fields = {name: self.cleaned_data[name] for name in names}
        return {**fields, "legacy_passphrase": self.cleaned_data.get("legacy_passphrase", "")}


class ApiClientAdmin(admin.ModelAdmin):
    """Consumers of the token API. Only the key's prefix is ever shown after creation."""

    form = ApiClientForm
    # What fits at 1280 px without scrolling; networks and legacy headers are on the page.
    list_display = ["name", "key_display", "scope", "last_used", "state", "served_24h"]
    list_filter = ["all_orgs", RevokedFilter]
    search_fields = ["name", "key_prefix"]
    filter_horizontal = ["orgs"]
    actions = ["revoke_selected"]
    readonly_fields = [
        "key_display",
        "state",
        "created_at",
        "created_by",
        "last_used",
        "served_24h",
    ]
    fieldsets = [
        (None, {"fields": ["name", "key_display", "state"]}),
        ("Scope", {"fields": ["all_orgs", "orgs", "allowed_networks"]}),
        ("Sample app headers (/api/token)", {"fields": ["legacy_from", "legacy_passphrase"]}),
        ("Use", {"fields": ["created_at", "created_by", "last_used", "served_24h"]}),
    ]

    @admin.display(description="key", ordering="key_prefix")
    def key_display(self, obj: ApiClient) -> str:
        return f"tc_{obj.key_prefix}_…" if obj.key_prefix else "(issued when saved)"

    @admin.display(description="scope")
    def scope(self, obj: ApiClient) -> str:
        return "all orgs" if obj.all_orgs else ", ".join(o.slug for o in obj.orgs.all()) or "none"

    @admin.display(description="legacy headers", boolean=True)
    def legacy(self, obj: ApiClient) -> bool:
        return obj.has_legacy_access

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj: ApiClient) -> str:
        if not obj.is_revoked:
            return "active"
        return format_html("revoked {}", display.when(obj.revoked_at))

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, obj: ApiClient) -> object:
        return display.when(obj.last_used_at)

    @admin.display(description="served, 24 h")
    def served_24h(self, obj: ApiClient) -> str:
        return served_link(obj.served_counts, "client", obj.pk)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("orgs")

    def save_model(self, request: HttpRequest, obj: ApiClient, form, change: bool) -> None:
        """Save through the services; a new client's key is kept for response_add only."""
        if change:
            services.api_client_update(client=obj, **form.service_fields())
            return
        client, key = services.api_client_create(created_by=request.user, **form.service_fields())
        # The admin goes on with `obj` (the log entry, the key page): make it the saved client.
        obj.pk = client.pk
        obj.refresh_from_db()
        obj._state.adding = False
        obj.issued_key = key  # on the instance for this request only, shown once

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """The service set the orgs already; form.save_m2m would write them a second time."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def response_add(self, request: HttpRequest, obj: ApiClient, post_url_continue=None):
        """Show the new key once, on a page of its own; it is stored nowhere."""
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key for {obj}",
            "opts": self.opts,
            "client": obj,
            "key": obj.issued_key,
            "token_url": settings.CONSOLE_BASE_URL
            + reverse("tokens:api-org-token", args=[_readable_slug(obj)]),
            "change_url": reverse("admin:tokens_apiclient_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "admin/tokens/apiclient/key_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self):
        revoke = self.admin_site.admin_view(self.revoke_view)
        return [
            path("<int:client_id>/revoke/", revoke, name="tokens_apiclient_revoke"),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not obj.is_revoked and self.has_change_permission(request, obj):
            context["revoke_url"] = reverse("admin:tokens_apiclient_revoke", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def revoke_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        """Revoke one client's key: a confirmation page (GET), then the POST that does it."""
        client = get_object_or_404(ApiClient, pk=client_id)
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        if request.method == "POST":
            self.revoke_selected(request, ApiClient.objects.filter(pk=client.pk))
            return HttpResponseRedirect(reverse("admin:tokens_apiclient_change", args=[client.pk]))
        if client.is_revoked:
            self.message_user(request, f"The key of {client} is revoked already.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:tokens_apiclient_change", args=[client.pk]))
        return self._confirm_revoke(request, [client], action=False)

    @admin.action(description="Revoke the selected clients' keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Like delete_selected: a confirmation page first; then the next call gets 401."""
        clients = list(queryset.filter(revoked_at__isnull=True))
        if not clients:
            self.message_user(request, "The selected keys are revoked already.", messages.WARNING)
            return None
        if request.method != "POST" or request.POST.get("confirmed") != "yes":
            return self._confirm_revoke(request, clients)
        revoked = [client for client in clients if services.api_client_revoke(client=client)]
        for client in revoked:
            self.log_change(request, client, "Revoked the API key.")
        count = len(revoked)
        noun = "key" if count == 1 else "keys"
        self.message_user(request, f"Revoked {count} API client {noun}.", messages.SUCCESS)
        return None

    def _confirm_revoke(
        self, request: HttpRequest, clients: list[ApiClient], *, action: bool = True
    ) -> TemplateResponse:
        many = len(clients) > 1
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke "
            + (f"{len(clients)} API keys" if many else f"the key of {clients[0]}"),
            "opts": self.opts,
            "clients": clients,
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/tokens/apiclient/revoke_confirmation.html", context)


class TokenServedCountAdmin(ReadOnlyAdmin):
    """How many tokens the API served, per org, client and hour. Read-only."""

    list_display = ["hour", "org", "client", "count"]
    list_filter = ["org", "client"]
    date_hierarchy = "hour"
    list_select_related = ["org", "client"]
