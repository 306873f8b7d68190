"""App configuration: registers the system checks."""

from django.apps import AppConfig


class TokensConfig(AppConfig):
    """The Token Console app."""

    name = "tokens"
    verbose_name = "Token Console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
