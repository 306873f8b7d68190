"""Helpers for settings.py: what production mode demands of the environment.

Production is signalled by ``DJANGO_ENV=production``. Without it (a laptop's ``make run``,
the tests) the console runs over plain http; with it, the settings refuse to load
unless the secrets and hosts it cannot run safely without are set.
"""

from django.core.exceptions import ImproperlyConfigured

PRODUCTION_SIGNAL = "DJANGO_ENV=production"


def is_production(django_env: str) -> bool:
    """True when DJANGO_ENV names production mode."""
    return django_env.strip().lower() == "production"


def require_production_settings(
    *, secret_key: str, encryption_keys: list[str], hosts: list[str]
) -> None:
    """Raise ImproperlyConfigured naming each missing variable (never its value)."""
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
            "the console refuses to start without it. See README, Production."
        )
    if "*" in hosts:
        raise ImproperlyConfigured(
            f"{PRODUCTION_SIGNAL} refuses ALLOWED_HOSTS=*: list the console's host names "
            "(for example ALLOWED_HOSTS=console.example.com)."
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
