"""Integration, Org, Token, TokenEvent, ApiClient: what the console stores."""

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from . import apikeys, clock, oauth
from .conf import app_settings
from .fields import EncryptedTextField, HttpsURLField
from .providers import PRESETS, PROVIDER_CHOICES


def fingerprint(secret: str) -> str:
    """Short SHA-256 prefix that identifies a token in pages and events without revealing it."""
    if not secret:
        return ""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return digest[: app_settings.FINGERPRINT_LENGTH]


# The provider endpoints an integration stores; the client secret and tokens travel to them.
PROVIDER_URL_FIELDS = ("authorize_url", "token_url", "userinfo_url", "revocation_url")


class Integration(models.Model):
    """One OAuth client registration at a provider."""

    class AuthMethod(models.TextChoices):
        POST = oauth.CLIENT_SECRET_POST, "client_secret_post (form fields)"
        BASIC = oauth.CLIENT_SECRET_BASIC, "client_secret_basic (HTTP Basic)"

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=20, choices=PROVIDER_CHOICES, default="webex")
    client_id = models.CharField(max_length=255)
    client_secret = EncryptedTextField()
    authorize_url = HttpsURLField(max_length=500)
    token_url = HttpsURLField(max_length=500)
    userinfo_url = HttpsURLField(
        max_length=500, blank=True, help_text="Optional. Webex: people/me, to verify the org."
    )
    revocation_url = HttpsURLField(
        max_length=500, blank=True, help_text="Optional. Called when an org is disconnected."
    )
    scopes = models.CharField(max_length=1000, blank=True, help_text="Space-separated.")
    token_auth_method = models.CharField(
        max_length=32, choices=AuthMethod.choices, default=AuthMethod.POST
    )
    refresh_rate_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most scheduled refreshes per minute. Blank: the console default.",
    )
    throttled_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The provider answered 429: scheduled refreshes wait until then.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def rate_per_minute(self) -> int:
        """Scheduled refreshes allowed per minute for this integration."""
        return self.refresh_rate_per_minute or app_settings.REFRESH_RATE_PER_MINUTE

    @property
    def is_webex(self) -> bool:
        """Whether Webex token and org-id conventions apply."""
        return self.provider == "webex"

    def clean(self) -> None:
        """In production, refuse provider URLs that would send secrets over plain http."""
        if not getattr(settings, "PRODUCTION", False):
            return
        errors = {
            name: "Production refuses plain http to another machine: use https:// "
            "(http is allowed only to localhost)."
            for name in PROVIDER_URL_FIELDS
            if oauth.plain_http_off_loopback(getattr(self, name))
        }
        if errors:
            raise ValidationError(errors)

    def apply_preset_defaults(self) -> None:
        """Fill blank URLs and scopes from the provider preset; set values stay as they are."""
        preset = PRESETS[self.provider]
        for name in ("authorize_url", "token_url", "userinfo_url", "revocation_url", "scopes"):
            if not getattr(self, name):
                setattr(self, name, getattr(preset, name))

    def client_config(self) -> oauth.ClientConfig:
        """The protocol-level view of this integration."""
        return oauth.ClientConfig(
            client_id=self.client_id,
            client_secret=self.client_secret,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            userinfo_url=self.userinfo_url,
            scopes=self.scopes,
            auth_method=self.token_auth_method,
            timeout=(app_settings.HTTP_CONNECT_TIMEOUT, app_settings.HTTP_TIMEOUT),
            revocation_url=self.revocation_url,
            revocation_style=oauth.REVOKE_BEARER_DELETE if self.is_webex else oauth.REVOKE_RFC7009,
            total_deadline=app_settings.HTTP_TOTAL_DEADLINE,
            max_lifetime=app_settings.TOKEN_LIFETIME_MAX,
            retry_after_max=app_settings.RETRY_AFTER_MAX,
        )


class Org(models.Model):
    """A customer organisation connected (or to be connected) through an integration."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CONNECTED = "connected", "Connected"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
        DISABLED = "disabled", "Disabled"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    integration = models.ForeignKey(
        Integration,
        on_delete=models.PROTECT,
        related_name="orgs",
        help_text="Fixed while the org holds a token: disconnect it to move it to another one.",
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    status_reason = models.CharField(max_length=500, blank=True)
    provider_org_id = models.CharField(
        "provider org id",
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Set on connect. Clear it to allow a reconnect to another provider org.",
    )
    cluster_id = models.CharField(max_length=32, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("connect_org", "Can connect or reconnect an org at the provider"),
            ("refresh_org", "Can refresh an org's token now"),
            ("disconnect_org", "Can disconnect an org"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, refusing a move to another integration as clean() does, for every ORM write."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"integration", "integration_id"} & set(update_fields):
            self._check_integration_binding()
        super().save(*args, **kwargs)

    @property
    def integration_is_bound(self) -> bool:
        """Whether the org holds a grant of its integration, so it may not move to another."""
        bound = (self.Status.CONNECTED, self.Status.NEEDS_RECONNECT)
        return self.status in bound or Token.objects.filter(org_id=self.pk).exists()

    def clean(self) -> None:
        """Refuse moving an org that holds a token to another integration, and a provider
        org id that another org of the same integration is bound to."""
        super().clean()
        self._check_integration_binding()
        other = self.bound_elsewhere()
        if other is not None:
            raise ValidationError({"provider_org_id": binding_conflict_message(self, other)})

    def _check_integration_binding(self) -> None:
        # Its refresh token and the other integration's client secret would go to that
        # integration's token URL, and the API would serve that provider's token as this org's.
        if self.pk is None or self.integration_id is None:
            return
        stored = Org.objects.filter(pk=self.pk).first()
        if stored is None or stored.integration_id == self.integration_id:
            return
        if stored.integration_is_bound:
            raise ValidationError(
                f"{stored} holds a token of integration {stored.integration}. Disconnect the "
                "org before moving it to another integration.",
                code="integration_bound",
            )

    def bound_elsewhere(self) -> "Org | None":
        """Another org of this integration bound to the same provider org id, if any.

        One provider org binds one org per integration, whatever either org's status: a
        pending (disconnected) or disabled org keeps its binding and reconnects to it, and
        the legacy /api/token finds orgs by this id alone.
        """
        if not self.provider_org_id or self.integration_id is None:
            return None
        others = Org.objects.filter(
            integration_id=self.integration_id, provider_org_id=self.provider_org_id
        )
        return others.exclude(pk=self.pk).order_by("pk").first()


def binding_conflict_message(org: Org, other: Org) -> str:
    """What to tell an admin whose org would share its provider org with `other`."""
    return (
        f"Provider org {org.provider_org_id} is already bound to org {other.slug!r} "
        f"({other.get_status_display().lower()}) of this integration. Use a different "
        f"provider org, or first clear the provider org id of {other.slug!r} (or delete it)."
    )


class Token(models.Model):
    """An org's current credential. Written only by tokens.services."""

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="token")
    # The integration the tokens were obtained through: refresh and revoke use it, not
    # whatever the org names now.
    integration = models.ForeignKey(
        Integration, on_delete=models.PROTECT, null=True, editable=False, related_name="+"
    )
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(blank=True)
    token_type = models.CharField(max_length=32, default="Bearer")
    scope = models.TextField(blank=True)
    access_expires_at = models.DateTimeField()
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    next_refresh_at = models.DateTimeField(null=True, blank=True, db_index=True)
    version = models.PositiveIntegerField(default=1)
    access_fingerprint = models.CharField(max_length=64)
    refresh_fingerprint = models.CharField(max_length=64, blank=True)
    obtained_at = models.DateTimeField(help_text="When the current access token was issued.")
    # Single flight: a refresh claims the token until `refreshing_until` (a lease).
    refresh_claim = models.CharField(max_length=32, blank=True)
    refreshing_until = models.DateTimeField(null=True, blank=True)
    # The sweep's mark that a task for this org is queued (see DISPATCH_LEASE).
    dispatched_until = models.DateTimeField(null=True, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    # One alert per condition: set when the alert is sent, cleared when it is over.
    failing_alerted = models.BooleanField(default=False)
    expiry_alerted_fingerprint = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"Token of {self.org} v{self.version} ({self.access_fingerprint})"


class TokenEvent(models.Model):
    """One line of the append-only token history. Never holds a secret."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        CONNECT_FAILED = "connect_failed", "Connect failed"
        REFRESHED = "refreshed", "Refreshed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        DISCONNECTED = "disconnected", "Disconnected"
        ORG_MISMATCH = "org_mismatch", "Org mismatch"
        KEY_ROTATED = "key_rotated", "Key rotated"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        API = "api", "API"
        CALLBACK = "callback", "OAuth callback"
        COMMAND = "command", "Command"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        WARNING = "warning", "Warning"

    org = models.ForeignKey(
        Org, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    # Kept so the history still names the org after the org is deleted.
    org_slug = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=500, blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    access_fingerprint = models.CharField(max_length=64, blank=True)
    refresh_fingerprint = models.CharField(max_length=64, blank=True)
    token_version = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The history list and each of its filters read one of these in order and stop
        # after a page; the last one answers "is there a newer event of this kind for this
        # org" for the prune (services.retention) with a single probe.
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="tokenevent_time"),
            models.Index(fields=["org", "-created_at", "-id"], name="tokenevent_org_time"),
            models.Index(fields=["kind", "-created_at", "-id"], name="tokenevent_kind_time"),
            models.Index(fields=["outcome", "-created_at", "-id"], name="tokenevent_outcome_time"),
            models.Index(fields=["trigger", "-created_at", "-id"], name="tokenevent_trigger_time"),
            models.Index(fields=["org_slug", "kind", "-created_at"], name="tokenevent_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.org_slug} ({self.outcome})"


class TokenEventRollup(models.Model):
    """Running totals of the token history by kind, trigger and outcome.

    Added to in the transaction that records each event (services.events), so /metrics
    reads these few rows instead of the whole history, and pruning old events
    (services.retention) leaves the totals as they were: counters never go down.
    """

    # Upper bounds (milliseconds) of the duration buckets below, and of the refresh latency
    # histogram on /metrics. The slowest attempt is bounded by the HTTP timeouts (connect
    # + read, 20 s by default). Changing them needs a migration that adds the columns.
    DURATION_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)

    kind = models.CharField(max_length=20, choices=TokenEvent.Kind.choices)
    trigger = models.CharField(max_length=20, choices=TokenEvent.Trigger.choices)
    outcome = models.CharField(max_length=10, choices=TokenEvent.Outcome.choices)
    count = models.PositiveBigIntegerField(default=0)
    timed = models.PositiveBigIntegerField(default=0, help_text="Events with a duration.")
    duration_ms_sum = models.PositiveBigIntegerField(default=0)
    # Events whose duration is at or under each bound (cumulative, as Prometheus wants).
    le_50 = models.PositiveBigIntegerField(default=0)
    le_100 = models.PositiveBigIntegerField(default=0)
    le_250 = models.PositiveBigIntegerField(default=0)
    le_500 = models.PositiveBigIntegerField(default=0)
    le_1000 = models.PositiveBigIntegerField(default=0)
    le_2500 = models.PositiveBigIntegerField(default=0)
    le_5000 = models.PositiveBigIntegerField(default=0)
    le_10000 = models.PositiveBigIntegerField(default=0)
    le_20000 = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["kind", "trigger", "outcome"]
        verbose_name = "token event totals"
        verbose_name_plural = "token event totals"
        constraints = [
            models.UniqueConstraint(fields=["kind", "trigger", "outcome"], name="rollup_once")
        ]

    def __str__(self) -> str:
        return f"{self.count} {self.kind} {self.trigger} {self.outcome}"

    @classmethod
    def bucket_fields(cls) -> list[tuple[int, str]]:
        """(bound in ms, field name) of each duration bucket, smallest first."""
        return [(bound, f"le_{bound}") for bound in cls.DURATION_BUCKETS_MS]


def validate_networks(value: str) -> None:
    """Form and model validation for ApiClient.allowed_networks."""
    try:
        apikeys.networks_parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class ApiClient(models.Model):
    """A consumer of the token API: its key (only a hash is kept), scope and networks."""

    name = models.CharField(max_length=100, unique=True)
    all_orgs = models.BooleanField(
        "all orgs", default=False, help_text="May read every org, now and future ones."
    )
    orgs = models.ManyToManyField(
        Org, blank=True, related_name="api_clients", help_text="The orgs it may read."
    )
    key_prefix = models.CharField(max_length=apikeys.PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    allowed_networks = models.TextField(
        blank=True,
        validators=[validate_networks],
        help_text="Source addresses or CIDRs, one per line. Blank: any address.",
    )
    # The sample app's /api/token headers, for flows that have not moved to keys yet.
    legacy_from = models.CharField(
        "legacy X-From", max_length=200, blank=True, help_text="Blank: no legacy access."
    )
    legacy_passphrase_hash = models.CharField(max_length=128, blank=True, editable=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"
        # The legacy /api/token finds its client by X-From (selectors.api_legacy_lookup).
        indexes = [models.Index(fields=["legacy_from"], name="apiclient_legacy_from")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        """Whether the key no longer opens anything."""
        return self.revoked_at is not None

    @property
    def has_legacy_access(self) -> bool:
        """Whether the sample's /api/token headers are accepted for this client."""
        return bool(self.legacy_from and self.legacy_passphrase_hash)


class TokenServedCount(models.Model):
    """How many access tokens the API served to one client for one org in one hour."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="served_counts")
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="served_counts")
    hour = models.DateTimeField(help_text="The start of the hour (UTC).")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-hour", "org", "client"]
        # "1 hourly count of tokens served" where "tokens served" read "1 tokens served".
        verbose_name = "hourly count of tokens served"
        verbose_name_plural = "hourly counts of tokens served"
        constraints = [
            models.UniqueConstraint(fields=["org", "client", "hour"], name="served_once_per_hour")
        ]

    def __str__(self) -> str:
        return f"{self.count} tokens of {self.org} to {self.client} at {self.hour:%Y-%m-%d %H:00}"


class Webhook(models.Model):
    """Where an API client receives signed events about the orgs in its scope.

    The signing secret is shown once, like a key; a rotation keeps the previous one
    signing until `previous_secret_expires_at`, so receivers can switch.
    """

    client = models.OneToOneField(ApiClient, on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(
        "webhook URL",
        max_length=500,
        help_text="https, resolving to a public address (or a network in "
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS). Redirects are not followed.",
    )
    signing_secret = EncryptedTextField(editable=False)
    previous_signing_secret = EncryptedTextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    # When deliveries started failing without a success since; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["client__name"]

    def __str__(self) -> str:
        return f"Webhook of {self.client}"

    def clean(self) -> None:
        """Refuse URLs that are not https to a public address (the SSRF guard)."""
        from . import outbound

        try:
            outbound.url_check(self.url)
        except outbound.UnsafeURL as exc:
            raise ValidationError({"url": str(exc)}) from None


class WebhookDelivery(models.Model):
    """One event to one webhook, with its attempts. Holds no token and no secret."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=36, unique=True)
    event = models.CharField(max_length=40)
    org_slug = models.CharField(max_length=64, blank=True)
    payload = models.TextField(help_text="The JSON body, sent byte for byte on each attempt.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts are retried until then (WEBHOOK_RETRY_HOURS after queueing).
    retry_until = models.DateTimeField(null=True, blank=True)
    dispatched_until = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The start of the receiver's answer, or what went wrong on the way.
    answer = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=200, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.org_slug} to {self.webhook.client} ({self.status})"


class AlertType(models.TextChoices):
    """The alerts an admin channel can be routed."""

    NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
    REFRESH_FAILING = "refresh_failing", "Refresh failing (after repeated attempts)"
    RECOVERED = "recovered", "Recovered"
    REFRESH_TOKEN_EXPIRING = "refresh_token_expiring", "Refresh token expiring"
    WEBHOOK_DISABLED = "webhook_disabled", "Webhook disabled"
    ENCRYPTION_KEY = "encryption_key", "Encryption key cannot decrypt"


def validate_alert_types(value: Any) -> None:
    """Model validation for AlertChannel.alert_types: a list of known alert types."""
    if not isinstance(value, list) or not set(value) <= set(AlertType.values):
        raise ValidationError(f"Choose alert types among: {', '.join(AlertType.values)}.")


def all_alert_types() -> list[str]:
    """Every alert type: a new channel receives them all."""
    return list(AlertType.values)


class AlertChannel(models.Model):
    """Where admin alerts go: e-mail, or a Webex space through a bot."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBEX = "webex", "Webex space"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EMAIL)
    enabled = models.BooleanField(default=True)
    alert_types = models.JSONField(default=all_alert_types, validators=[validate_alert_types])
    email_recipients = models.TextField(
        blank=True, help_text="E-mail: addresses, one per line. Blank: the ADMINS setting."
    )
    webex_bot_token = EncryptedTextField(
        "Webex bot access token", blank=True, help_text="Webex: write-only, stored encrypted."
    )
    webex_room_id = models.CharField("Webex room id", max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A Webex channel needs a room id and a bot token."""
        if self.kind == self.Kind.WEBEX and not self.webex_room_id:
            raise ValidationError({"webex_room_id": "A Webex space channel needs a room id."})

    def send(self, subject: str, body: str) -> None:
        """Post one alert now; raises AlertChannelError when the channel did not take it."""
        from .services.alert_channels import alert_channel_send

        alert_channel_send(channel=self, subject=subject, body=body)


class AlertMessage(models.Model):
    """One alert to one channel, kept until sent so a failing channel is retried."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="messages")
    alert_type = models.CharField(max_length=30, choices=AlertType.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    dispatched_until = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=clock.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alertmessage_due")]

    def __str__(self) -> str:
        return f"{self.get_alert_type_display()} to {self.channel} ({self.status})"
