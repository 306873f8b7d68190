"""System checks for misconfiguration that would otherwise fail late."""

from pathlib import Path

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

from .apikeys import networks_parse
from .conf import REFRESH_LEASE_MARGIN, app_settings, console_base_url
from .exceptions import EncryptionKeyError
from .fields import SETTING, configured_keys, validate_keys
from .oauth import plain_http_off_loopback


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


@checks.register(checks.Tags.security, checks.Tags.database)
def check_stored_values_decrypt(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The keys must decrypt what is stored: a valid but wrong key passes the check above.

    Runs in a plain `manage.py check` (not only with --database) because a wrong key must
    stop it, and runserver and qcluster, which run the checks when they start. It reads
    one value per encrypted column and prints none. An Error when nothing stored decrypts
    (the keys are wrong); a Warning when only some newest value does not (one row from
    elsewhere must not stop the console: refreshes mark such an org needs_reconnect).
    """
    if check_encryption_keys(app_configs):
        return []  # no usable keys: E001/E002 say so
    from .services import encryption_keys_sample

    opened_here = connection.connection is None
    try:
        if not _encrypted_tables_exist():
            return []  # before migrate: nothing stored yet
        sample = encryption_keys_sample()
    except (DatabaseError, ImproperlyConfigured):
        return []  # no database to read (yet): Django's own checks and migrate report that
    finally:
        if opened_here and not connection.in_atomic_block:
            connection.close()  # leave no connection open for a forking qcluster to share
    if not sample.undecryptable:
        return []
    return [_undecryptable_message(sample.undecryptable, wrong_keys=sample.nothing_decrypts)]


def _encrypted_tables_exist() -> bool:
    from .services.keys import encrypted_fields

    tables = set(connection.introspection.table_names())
    return all(model._meta.db_table in tables for model in encrypted_fields())


def _undecryptable_message(labels: list[str], *, wrong_keys: bool) -> checks.CheckMessage:
    names = ", ".join(labels)
    if wrong_keys:
        return checks.Error(
            f"No key in {SETTING} decrypts the stored secrets ({names}): the configured "
            "keys are not the ones that encrypted them.",
            hint=f"Put the key that encrypted them back into {SETTING} (the new key first, "
            "old keys after it) and restart; `manage.py rotate_encryption_keys` then moves "
            "every value to the first key.",
            id="tokens.E005",
        )
    return checks.Warning(
        f"No key in {SETTING} decrypts the newest stored {names}: it was encrypted with a "
        "key that is no longer configured.",
        hint=f"Put that key back into {SETTING} (after the first). If it is lost, enter the "
        "integration's client secret again or reconnect the org; until then its refreshes "
        "stop with needs_reconnect (encryption_key).",
        id="tokens.W002",
    )


@checks.register()
def check_console_base_url(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """CONSOLE_BASE_URL builds the redirect URI the provider must know."""
    base = console_base_url()
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
def check_webhook_networks(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """WEBHOOK_ALLOW_PRIVATE_NETWORKS must parse, or every webhook save and delivery fails."""
    try:
        networks_parse(app_settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS)
    except ValueError as exc:
        return [
            checks.Error(
                f"WEBHOOK_ALLOW_PRIVATE_NETWORKS: {exc}",
                hint="Set TOKEN_CONSOLE_WEBHOOK_ALLOW_PRIVATE_NETWORKS to CIDRs of on-premise "
                "receivers, e.g. '10.20.0.0/16', or leave it empty (public receivers only).",
                id="tokens.E011",
            )
        ]
    return []


@checks.register(checks.Tags.security)
def check_private_files(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The SQLite database (sessions, API client hashes) and .env (the keys) are owner-only."""
    exposed = [str(path) for path in _private_files() if path.stat().st_mode & 0o077]
    if not exposed:
        return []
    return [
        checks.Warning(
            f"Other users of this machine can read or write {', '.join(exposed)}: they hold "
            "the admin sessions, API client hashes and the keys that decrypt every token.",
            hint=f"Run: chmod 600 {' '.join(exposed)}",
            id="tokens.W004",
        )
    ]


def _private_files() -> list[Path]:
    """The existing .env and SQLite database files (with their -wal and -shm)."""
    candidates = [Path(settings.ENV_FILE)] if getattr(settings, "ENV_FILE", None) else []
    database = settings.DATABASES["default"]
    name = str(database.get("NAME") or "")
    if database["ENGINE"].endswith("sqlite3") and name and not name.startswith((":", "file:")):
        candidates += [Path(name + suffix) for suffix in ("", "-wal", "-shm")]
    return [path for path in candidates if path.exists()]


@checks.register(checks.Tags.security, deploy=True)
def check_provider_urls(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """In production, no integration sends its secrets over plain http to another machine."""
    if not getattr(settings, "PRODUCTION", False):
        return []
    from .models import PROVIDER_URL_FIELDS, Integration  # models load after the checks

    try:
        integrations = list(Integration.objects.only("name", *PROVIDER_URL_FIELDS))
    except DatabaseError:
        return []  # not migrated yet (`make serve` checks first): nothing stored to check
    return [
        checks.Error(
            f"Integration {integration.name!r}: {name} is plain http to another machine, "
            "so client secrets and tokens would cross the network in clear.",
            hint="Change it to https:// in the admin (Integrations).",
            id="tokens.E006",
        )
        for integration in integrations
        for name in PROVIDER_URL_FIELDS
        if plain_http_off_loopback(getattr(integration, name))
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_console_base_url_https(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """In production, the OAuth callback (built from CONSOLE_BASE_URL) must be https."""
    base = console_base_url()
    if getattr(settings, "PRODUCTION", False) and plain_http_off_loopback(base):
        return [
            checks.Warning(
                f"CONSOLE_BASE_URL is plain http ({base}): the provider would send each "
                "authorization code to the console in clear.",
                hint="Set CONSOLE_BASE_URL to the https:// address the proxy serves.",
                id="tokens.W003",
            )
        ]
    return []


@checks.register()
def check_cluster_stop_timeout(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """qcluster must stop within REFRESH_LEASE, which supervisors are told to wait for."""
    stop, lease = app_settings.CLUSTER_STOP_TIMEOUT, app_settings.REFRESH_LEASE
    if stop >= lease:
        return [
            checks.Warning(
                f"CLUSTER_STOP_TIMEOUT ({stop:g} s) is not below REFRESH_LEASE ({lease:g} s): "
                "a stopping qcluster may outlast its supervisor's grace period and be "
                "killed mid-refresh.",
                hint="Set TOKEN_CONSOLE_CLUSTER_STOP_TIMEOUT below REFRESH_LEASE "
                "(docs/workers.md).",
                id="tokens.W005",
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
            id="tokens.E007",
        )
    ]


@checks.register()
def check_alert_channels(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Alerts (an org needs a reconnect, refreshes keep failing) must reach someone."""
    from .alerts import alert_channels  # imports the models, which load after the checks

    if alert_channels():
        return []
    return [
        checks.Warning(
            "No alert channel is configured (ADMINS is empty): nobody is told when an org "
            "needs a reconnect, its refreshes keep failing or its refresh token runs out.",
            hint="Set ADMINS (for example ADMINS=ops@example.com) and EMAIL_URL (for example "
            "smtp+tls://mail.example.com:587), then run `manage.py send_test_alert`.",
            id="tokens.W010",
        )
    ]
