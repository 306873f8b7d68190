"""Admin for the token API: API clients (the key is shown once) and tokens-served counts."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from tokens import clock, services
from tokens.models import ApiClient

from .history import ReadOnlyAdmin


def served_link(counts: QuerySet, field: str, pk: int | None) -> str:
    """The tokens served in the last 24 h, linked to the hourly counts behind the figure."""
    if pk is None:
        return "—"
    since = clock.now() - timedelta(hours=24)
    total = counts.filter(hour__gte=since).aggregate(n=Sum("count"))["n"] or 0
    url = reverse("admin:tokens_tokenservedcount_changelist") + f"?{field}__id__exact={pk}"
    return format_html('<a href="{}">{}</a>', url, total)


class ApiClientForm(forms.ModelForm):
    """The legacy passphrase is write-only: never rendered back; blank keeps the stored one.

    The services validate; the form shows their errors. Saving goes through the services
    too (ApiClientAdmin.save_model), as the create_api_client command does.
    """

    legacy_passphrase = forms.CharField(
        label="legacy X-API-Phrase",
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
    list_display = [
        "name",
        "key_display",
        "scope",
        "allowed_networks",
        "legacy",
        "last_used_at",
        "state",
        "served_24h",
    ]
    list_filter = ["all_orgs", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_prefix"]
    filter_horizontal = ["orgs"]
    actions = ["revoke_selected"]
    readonly_fields = [
        "key_display",
        "state",
        "created_at",
        "created_by",
        "last_used_at",
        "served_24h",
    ]
    fieldsets = [
        (None, {"fields": ["name", "key_display", "state"]}),
        ("Scope", {"fields": ["all_orgs", "orgs", "allowed_networks"]}),
        ("Sample app headers (/api/token)", {"fields": ["legacy_from", "legacy_passphrase"]}),
        ("Use", {"fields": ["created_at", "created_by", "last_used_at", "served_24h"]}),
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
        return f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}" if obj.is_revoked else "active"

    @admin.display(description="tokens served, last 24 h")
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
            "token_url": request.build_absolute_uri(
                reverse("tokens:api-org-token", args=["ORG-SLUG"])
            ),
            "change_url": reverse("admin:tokens_apiclient_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "admin/tokens/apiclient/key_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected clients' keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Revoke at once: the next call with such a key gets 401."""
        revoked = [client for client in queryset if services.api_client_revoke(client=client)]
        for client in revoked:
            self.log_change(request, client, "Revoked the API key.")
        self.message_user(request, f"Revoked {len(revoked)} API client key(s).", messages.SUCCESS)
        return None


class TokenServedCountAdmin(ReadOnlyAdmin):
    """How many tokens the API served, per org, client and hour. Read-only."""

    list_display = ["hour", "org", "client", "count"]
    list_filter = ["org", "client"]
    date_hierarchy = "hour"
    list_select_related = ["org", "client"]
