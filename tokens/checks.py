"""System checks for misconfiguration that would otherwise fail late."""

from django.conf import settings
from django.core import checks

from .apikeys import networks_parse
from .conf import REFRESH_LEASE_MARGIN, app_settings
from .exceptions import EncryptionKeyError
from .fields import SETTING, configured_keys, validate_keys


@checks.register(checks.Tags.security)
def check_encryption_keys(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """FIELD_ENCRYPTION_KEYS must hold at least one valid Fernet key."""
    if not configured_keys():
        return [
            checks.Error(
                f"{SETTING} is empty: tokens and client secrets cannot be stored.",
                hint="Set FIELD_ENCRYPTION_KEYS in the environment or .env (`make env`).",
                id="tokens.E001",
            )
        ]
    try:
        validate_keys()
    except EncryptionKeyError as exc:
        return [checks.Error(str(exc), id="tokens.E002")]
    return []


@checks.register()
def check_console_base_url(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """CONSOLE_BASE_URL builds the redirect URI the provider must know."""
    base = getattr(settings, "CONSOLE_BASE_URL", "")
    if not base.startswith(("http://", "https://")):
        return [
            checks.Error(
                "CONSOLE_BASE_URL must be an absolute http(s) URL.",
                hint="For example CONSOLE_BASE_URL=https://tokens.example.com",
                id="tokens.E003",
            )
        ]
    return []


@checks.register()
def check_task_results_kept(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """/healthz measures the cluster by the task results django-q2 keeps."""
    if getattr(settings, "Q_CLUSTER", {}).get("save_limit", 250) < 0:
        return [
            checks.Warning(
                "Q_CLUSTER save_limit is negative: django-q2 keeps no successful tasks, "
                "so /healthz can never see the cluster work and always answers 503.",
                hint="Set Q_SAVE_LIMIT to a positive number (the default is 1000).",
                id="tokens.W001",
            )
        ]
    return []


@checks.register()
def check_metrics_networks(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """METRICS_ALLOWED_NETWORKS must parse, or every scrape would fail."""
    try:
        networks_parse(app_settings.METRICS_ALLOWED_NETWORKS)
    except ValueError as exc:
        return [
            checks.Error(
                f"METRICS_ALLOWED_NETWORKS: {exc}",
                hint="Set TOKEN_CONSOLE_METRICS_ALLOWED_NETWORKS, e.g. '127.0.0.1/32 10.0.0.0/8'.",
                id="tokens.E004",
            )
        ]
    return []


@checks.register()
def check_refresh_lease(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """REFRESH_LEASE must outlast the longest provider call, or a refresh token is used twice."""
    lease, deadline = app_settings.REFRESH_LEASE, app_settings.HTTP_TOTAL_DEADLINE
    longest = app_settings.HTTP_CONNECT_TIMEOUT + deadline
    if deadline > 0 and lease > longest + REFRESH_LEASE_MARGIN:
        return []
    return [
        checks.Error(
            f"REFRESH_LEASE ({lease:g} s) must be longer than "
            f"HTTP_CONNECT_TIMEOUT + HTTP_TOTAL_DEADLINE ({longest:g} s) plus "
            f"{REFRESH_LEASE_MARGIN} s, and HTTP_TOTAL_DEADLINE positive: a second refresh "
            "could otherwise claim the org and present the same refresh token while the "
            "first is still waiting for the provider.",
            hint="Raise TOKEN_CONSOLE_REFRESH_LEASE or lower TOKEN_CONSOLE_HTTP_TOTAL_DEADLINE.",
            id="tokens.E005",
        )
    ]
