"""Helpers for settings.py: what production mode demands of the environment.

Production is signalled by ``DJANGO_ENV=production``. Without it (a laptop's ``make run``,
the tests) the console runs over plain http; with it, the settings refuse to load
unless the secrets and hosts it cannot run safely without are set.
"""

from django.core.exceptions import ImproperlyConfigured

PRODUCTION_SIGNAL = "DJANGO_ENV=production"
# Django's own advice (security.W009): a shorter key can be guessed or brute-forced, and
# it signs the session cookies.
MIN_SECRET_KEY_LENGTH = 50


def is_production(django_env: str) -> bool:
    """True when DJANGO_ENV names production mode."""
    return django_env.strip().lower() == "production"


def require_production_settings(
    *, secret_key: str, encryption_keys: list[str], hosts: list[str], debug: bool
) -> None:
    """Raise ImproperlyConfigured naming each missing or unsafe variable (never its value)."""
    missing = [
        name
        for name, value in (
            ("SECRET_KEY", secret_key),
            ("FIELD_ENCRYPTION_KEYS", encryption_keys),
            ("ALLOWED_HOSTS", hosts),
        )
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} needs {', '.join(missing)} set in the environment (or .env); "
            "the console refuses to start without it. See docs/operations.md, Production."
        )
    if "*" in hosts:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} refuses ALLOWED_HOSTS=*: list the console's host names "
            "(for example ALLOWED_HOSTS=console.example.com)."
        )
    if debug:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} refuses DEBUG=true: its error pages show settings and every "
            "frame's local variables, API keys included. Set DEBUG=false (the .env that "
            "`make run` writes sets DEBUG=true)."
        )
    if len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} refuses a SECRET_KEY shorter than {MIN_SECRET_KEY_LENGTH} "
            "characters: it signs the session cookies. Make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )


def require_trusted_proxies(*, ssl_header: tuple[str, str] | None, proxy_count: int | str) -> None:
    """Refuse a declared proxy (SECURE_PROXY_SSL_HEADER) whose X-Forwarded-For is not read.

    With TRUSTED_PROXY_COUNT=0 every caller has the proxy's address: ten bad API keys from
    anyone would get every key 429, five bad logins lock an admin out for everyone, and
    API clients' allowed networks only ever see the proxy.
    """
    if ssl_header and int(proxy_count) <= 0:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} with SECURE_PROXY_SSL_HEADER set (a reverse proxy in front) "
            "needs TRUSTED_PROXY_COUNT set to the number of proxies that append to "
            "X-Forwarded-For, usually TRUSTED_PROXY_COUNT=1; with 0 every caller shares the "
            "proxy's address. See docs/operations.md, Behind a reverse proxy."
        )


def proxy_ssl_header(meta_name: str) -> tuple[str, str] | None:
    """SECURE_PROXY_SSL_HEADER from a header name: "HTTP_X_FORWARDED_PROTO" or
    "X-Forwarded-Proto" become ("HTTP_X_FORWARDED_PROTO", "https"); "" is None."""
    name = meta_name.strip().upper().replace("-", "_")
    if not name:
        return None
    if not name.startswith("HTTP_"):
        name = "HTTP_" + name
    return (name, "https")
