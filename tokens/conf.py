"""All knobs of the Token Console in one place, with defaults.

Override any of them in ``settings.TOKEN_CONSOLE`` or from the environment as
``TOKEN_CONSOLE_<NAME>`` (for example ``TOKEN_CONSOLE_HTTP_TIMEOUT=5``).
"""

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Seconds to wait for the provider: (connect, read). The read timeout bounds the
    # gap between two bytes, not the whole answer ...
    "HTTP_CONNECT_TIMEOUT": 5.0,
    "HTTP_TIMEOUT": 15.0,
    # ... so every provider call (code exchange, refresh, userinfo, revocation) also has
    # this total deadline (seconds, from the start of the call to the last byte of the
    # answer). A provider that trickles its answer is cut off here and the call fails as
    # a transient error. REFRESH_LEASE must exceed HTTP_CONNECT_TIMEOUT + this +
    # REFRESH_LEASE_MARGIN (system check tokens.E007): a refresh is over before its claim.
    "HTTP_TOTAL_DEADLINE": 30.0,
    # Seconds an authorization request (state + PKCE verifier) stays usable.
    "OAUTH_STATE_TTL": 600,
    # How many connect flows one session may have open at once.
    "OAUTH_MAX_PENDING_STATES": 5,
    # Assumed access-token lifetime (seconds) when the provider omits expires_in.
    "DEFAULT_ACCESS_TOKEN_LIFETIME": 3600,
    # Longest access- or refresh-token lifetime (seconds) believed from a provider. A
    # larger expires_in is clamped to this, with a warning event: an absurd value must
    # neither break storing nor postpone the refresh forever.
    "TOKEN_LIFETIME_MAX": 365 * 24 * 3600,
    # Refresh once this share of the access token's life has passed ...
    "REFRESH_AT_FRACTION": 0.75,
    # ... and never later than this many seconds before it expires.
    "REFRESH_MARGIN_MAX": 15 * 60,
    # Up to this share of the planned interval is added at random, so orgs connected
    # together do not all refresh in the same minute.
    "REFRESH_JITTER_FRACTION": 0.02,
    # Refresh tokens unused this long are refreshed anyway, so inactivity never expires them.
    "REFRESH_TOKEN_KEEPALIVE_DAYS": 30,
    # A refresh claims its org for this long (seconds). It must outlast the provider call
    # (HTTP_CONNECT_TIMEOUT + HTTP_TOTAL_DEADLINE) by REFRESH_LEASE_MARGIN, so a second
    # refresh can only start once the first is surely over.
    "REFRESH_LEASE": 60,
    # Clocks of the machines running the console may differ by up to this much (seconds).
    # A lease or dispatch mark that ends further ahead than its length plus this was set
    # before the clock jumped back, and is ignored rather than waited out.
    "CLOCK_SKEW_TOLERANCE": 120,
    # A caller that finds a refresh in flight (Refresh now, the API) waits this long for it,
    # looking at the token again every REFRESH_WAIT_POLL_INTERVAL seconds.
    "REFRESH_WAIT": 20.0,
    "REFRESH_WAIT_POLL_INTERVAL": 0.05,
    # Storing a provider's answer is tried this many times when the database connection
    # drops (a restart, a failover), waiting STORE_RETRY_DELAY * attempt seconds between:
    # the answer exists only in memory, and a rotating provider will not give it again.
    "STORE_ATTEMPTS": 3,
    "STORE_RETRY_DELAY": 0.2,
    # The sweep marks an org dispatched for this long; a task lost with the queue
    # (a broker restart) is dispatched again afterwards. The database is the truth.
    "DISPATCH_LEASE": 300,
    # Most orgs one sweep dispatches, all integrations together.
    "SWEEP_MAX_DISPATCH": 20000,
    # Default refreshes per minute per integration; an integration may set its own.
    "REFRESH_RATE_PER_MINUTE": 1200,
    # Transient failures retry after base * 2^(n-1) seconds, capped, with jitter;
    # a longer Retry-After wins.
    "RETRY_BASE_DELAY": 30,
    "RETRY_MAX_DELAY": 30 * 60,
    # Longest Retry-After (seconds) believed from a provider; a longer one (or a date
    # further ahead) waits this long. Absurd values must neither overflow nor stall an org.
    "RETRY_AFTER_MAX": 24 * 3600,
    # Mail the admins after this many consecutive transient failures (once).
    "FAILURE_ALERT_AFTER": 3,
    # Mail the admins when a refresh token expires within this many days (once per token).
    "REFRESH_EXPIRY_WARNING_DAYS": 14,
    # Seconds `runconsole` waits for the web server and cluster to stop before killing them.
    "PROCESS_STOP_TIMEOUT": 5.0,
    # Seconds `qcluster` gives its workers after SIGTERM to finish the task in hand (a
    # refresh in flight completes) before it kills them. Keep it below REFRESH_LEASE, so
    # a stop ends within a lease; a supervisor must wait longer than REFRESH_LEASE.
    "CLUSTER_STOP_TIMEOUT": 50.0,
    # Characters of the SHA-256 hex digest kept as a token's fingerprint.
    "FINGERPRINT_LENGTH": 12,
    # The token API refreshes on demand when the access token expires within this many
    # seconds, so a caller never gets a token about to die in its hands.
    "API_REFRESH_MARGIN": 5 * 60,
    # ... but at most once per this many seconds per org (counted from when the current
    # token was obtained), unless it has expired: a provider whose tokens live shorter than
    # the margin would otherwise be asked for a new one, and an event written, per call.
    "API_MIN_REFRESH_INTERVAL": 60,
    # An API client's last_used_at is written at most this often (seconds), not per request.
    "API_LAST_USED_INTERVAL": 60,
    # After this many failed authentications from one address within the window
    # (seconds), that address gets 429 until the window has passed.
    "API_AUTH_FAILURE_LIMIT": 10,
    "API_AUTH_FAILURE_WINDOW": 5 * 60,
    # Tokens served are counted in memory and added to the database at most this often
    # (seconds) per process, never one write per request.
    "API_SERVED_FLUSH_INTERVAL": 10,
    # /healthz answers 503 when no cluster worker has finished a task within this many
    # seconds. The sweep runs every minute, so a live cluster always has one.
    "HEALTH_CLUSTER_MAX_AGE": 120,
    # How many reverse proxies in front of the console append to X-Forwarded-For.
    # 0 (the default): the header is ignored and REMOTE_ADDR is the source address.
    "TRUSTED_PROXY_COUNT": 0,
    # GET /metrics answers requests from these networks (CIDRs, space- or comma-separated;
    # empty: none) ...
    "METRICS_ALLOWED_NETWORKS": "127.0.0.1/32 ::1/128",
    # ... and requests from anywhere that send `Authorization: Bearer <this>` (empty: no
    # token is accepted). Use a long random value: secrets.token_urlsafe(32).
    "METRICS_TOKEN": "",
    # Token events older than this many days are deleted by the daily prune (0: keep them
    # all), except the latest event of each kind for each org. /metrics keeps counting them.
    "TOKEN_EVENT_RETENTION_DAYS": 400,
    # The prune deletes this many events per transaction, so it never holds a lock long.
    "TOKEN_EVENT_PRUNE_BATCH": 1000,
    # Consumer webhooks (docs/webhooks.md). Seconds to connect to a receiver, and the
    # total deadline of one delivery attempt (connect, send, and the whole answer).
    "WEBHOOK_CONNECT_TIMEOUT": 3.0,
    "WEBHOOK_TOTAL_TIMEOUT": 10.0,
    # Failed deliveries (network errors, 5xx, 429) retry after base * 2^(n-1) seconds,
    # capped, with jitter (a longer Retry-After wins), for this many hours.
    "WEBHOOK_RETRY_BASE_DELAY": 30,
    "WEBHOOK_RETRY_MAX_DELAY": 60 * 60,
    "WEBHOOK_RETRY_HOURS": 24,
    # A webhook whose deliveries have failed for this many days is disabled (admins alerted).
    "WEBHOOK_DISABLE_AFTER_DAYS": 3,
    # After a signing-secret rotation the previous secret still signs for this many hours.
    "WEBHOOK_SECRET_OVERLAP_HOURS": 24,
    # Delivery-log rows and admin alert messages older than this many days are pruned by
    # the webhook sweep (WEBHOOK_PRUNE_BATCH rows of each a minute; pending ones are kept).
    "WEBHOOK_DELIVERY_RETENTION_DAYS": 400,
    # Networks (CIDRs, space- or comma-separated) webhook URLs may resolve to although they
    # are not public: on-premise receivers, tests. Plain http is accepted only there.
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "",
    # django-q2 cluster (queue) that runs webhook deliveries and alert messages, so slow
    # or dead receivers never hold a refresh worker: `runconsole` starts it beside the
    # main cluster; scale-out runs `Q_CLUSTER_NAME=webhooks manage.py qcluster` too
    # (docs/workers.md). Empty: the main cluster runs them (not recommended).
    "WEBHOOK_CLUSTER": "webhooks",
    # Seconds a queued delivery (or alert) stays marked; a task lost with the queue is
    # queued again by the sweep afterwards. It outlasts WEBHOOK_TOTAL_TIMEOUT.
    "WEBHOOK_DISPATCH_LEASE": 120,
    # Most deliveries (and alerts) one sweep queues, and rows one prune deletes at once.
    "WEBHOOK_SWEEP_MAX": 1000,
    "WEBHOOK_PRUNE_BATCH": 1000,
    # Admin alert channels: the Webex API (tests point it at the fake provider) ...
    "WEBEX_API_BASE_URL": "https://webexapis.com",
    # ... and how long an alert that a channel failed to take is retried (hours).
    "ALERT_RETRY_HOURS": 24,
}


# Seconds by which REFRESH_LEASE must outlast the longest provider call (system check
# tokens.E007): time to store the answer, a pause of the process, a slow database.
REFRESH_LEASE_MARGIN = 5


def console_base_url() -> str:
    """CONSOLE_BASE_URL: the console's public address, without a trailing slash."""
    return getattr(settings, "CONSOLE_BASE_URL", "").rstrip("/")


def webhook_cluster_name() -> str | None:
    """The django-q2 cluster (queue) for deliveries and alerts; None: the main cluster."""
    return app_settings.WEBHOOK_CLUSTER.strip() or None


class AppSettings:
    """Reads a knob from settings.TOKEN_CONSOLE, falling back to DEFAULTS."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown Token Console setting: {name}")
        if name not in self._cache:
            default = DEFAULTS[name]
            value = getattr(settings, "TOKEN_CONSOLE", {}).get(name, default)
            # Values from the environment arrive as strings: coerce to the default's type.
            if isinstance(value, str) and not isinstance(default, str):
                value = _coerce(value, type(default))
            self._cache[name] = value
        return self._cache[name]

    def reload(self) -> None:
        """Forget cached values (settings changed, typically in a test)."""
        self._cache.clear()


def _coerce(raw: str, kind: type) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return kind(raw)


app_settings = AppSettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "TOKEN_CONSOLE":
        app_settings.reload()


setting_changed.connect(_on_setting_changed)
