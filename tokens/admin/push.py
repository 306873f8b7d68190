"""Admin for push: consumer webhooks, their delivery log, and admin alert channels."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokens.models import AlertChannel, AlertType, Webhook, WebhookDelivery
from tokens.services import webhooks

from .history import ReadOnlyAdmin

ROTATE_LABEL = "Rotate the signing secret (the old one signs for 24 h)"


class WebhookAdmin(admin.ModelAdmin):
    """An API client's webhook. The signing secret is shown once, on creation or rotation."""

    list_display = ["client", "url", "enabled", "failing_since", "disabled_reason"]
    list_filter = ["enabled"]
    fields = ["client", "url", "enabled", "failing_since", "disabled_reason", "created_at"]
    readonly_fields = ["failing_since", "disabled_reason", "created_at"]
    actions = ["rotate_secret", "send_ping"]
    # A URL typed without a scheme is taken as https (the only scheme allowed off-premise).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def save_model(self, request: HttpRequest, obj: Webhook, form, change: bool) -> None:
        if not change:
            obj.signing_secret = webhooks.signing_secret_generate()
            obj.issued_secret = obj.signing_secret  # shown once by response_add
        if obj.enabled:
            obj.failing_since, obj.disabled_reason = None, ""
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: Webhook, post_url_continue=None):
        """Show the new signing secret once; it is stored only encrypted."""
        return self._secret_page(request, obj, obj.issued_secret)

    def _secret_page(self, request: HttpRequest, webhook: Webhook, secret: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Signing secret for {webhook}",
            "opts": self.opts,
            "webhook": webhook,
            "secret": secret,
        }
        response = TemplateResponse(request, "admin/tokens/webhook/secret_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(
        description="Rotate the signing secret (old one valid 24 h)", permissions=["change"]
    )
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Rotate one webhook's secret and show the new one once."""
        if queryset.count() != 1:
            self.message_user(request, "Rotate one webhook at a time.", messages.ERROR)
            return None
        webhook = queryset.get()
        secret = webhooks.webhook_secret_rotate(webhook=webhook)
        self.log_change(request, webhook, "Rotated the signing secret.")
        return self._secret_page(request, webhook, secret)

    @admin.action(description="Send a test ping", permissions=["change"])
    def send_ping(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Deliver a `ping` to each selected webhook and report what the receiver answered."""
        for webhook in queryset.select_related("client"):
            delivery = webhooks.webhook_ping(webhook=webhook)
            if delivery.status == WebhookDelivery.Status.DELIVERED:
                level, text = messages.SUCCESS, f"answered HTTP {delivery.response_code}"
            elif delivery.response_code:
                level, text = messages.WARNING, f"answered HTTP {delivery.response_code}"
            else:
                level, text = messages.ERROR, f"failed: {delivery.error}"
            self.message_user(request, f"Ping to {webhook.client}: {text}.", level)


class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: read-only, with a Redeliver action."""

    list_display = [
        "created_at", "event", "org_slug", "client", "status", "attempts", "response_code",
        "duration_ms", "next_attempt_at",
    ]  # fmt: skip
    list_filter = ["status", "event", "webhook__client"]
    search_fields = ["event_id", "org_slug"]
    list_select_related = ["webhook__client"]
    actions = ["redeliver"]

    @admin.display(description="client", ordering="webhook__client__name")
    def client(self, obj: WebhookDelivery) -> str:
        return str(obj.webhook.client)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        """Read-only rows, but Redeliver needs the change permission to be offered."""
        return request.user.has_perm("tokens.change_webhook") and obj is None

    @admin.action(description="Redeliver the selected events", permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Queue each selected delivery again, same event id and body."""
        for delivery in queryset:
            webhooks.webhook_redeliver(delivery=delivery)
        self.message_user(request, f"Queued {queryset.count()} redelivery(ies).", messages.SUCCESS)


class AlertChannelForm(forms.ModelForm):
    """Alert types as checkboxes; the bot token is write-only (blank keeps the stored one)."""

    alert_types = forms.MultipleChoiceField(
        choices=AlertType.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    webex_bot_token = forms.CharField(
        label="Webex bot access token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only; stored encrypted. Leave blank to keep the stored one.",
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "enabled", "alert_types", "email_recipients", "webex_room_id"]

    def clean(self) -> dict:
        cleaned = super().clean()
        has_token = bool(cleaned.get("webex_bot_token") or self.instance.webex_bot_token)
        if cleaned.get("kind") == AlertChannel.Kind.WEBEX and not has_token:
            self.add_error("webex_bot_token", ValidationError("A Webex channel needs a bot token."))
        return cleaned

    def save(self, commit: bool = True) -> AlertChannel:
        if self.cleaned_data.get("webex_bot_token"):
            self.instance.webex_bot_token = self.cleaned_data["webex_bot_token"]
        return super().save(commit)


class AlertChannelAdmin(admin.ModelAdmin):
    """Where admin alerts go, and which ones."""

    form = AlertChannelForm
    list_display = ["name", "kind", "enabled", "routed"]
    list_filter = ["kind", "enabled"]

    @admin.display(description="alert types")
    def routed(self, obj: AlertChannel) -> str:
        labels = dict(AlertType.choices)
        return ", ".join(str(labels.get(t, t)) for t in obj.alert_types) or "none"


class AlertMessageAdmin(ReadOnlyAdmin):
    """Alerts sent (or being retried) per channel. Read-only."""

    list_display = ["created_at", "alert_type", "channel", "status", "attempts", "error"]
    list_filter = ["status", "alert_type", "channel"]
    list_select_related = ["channel"]
