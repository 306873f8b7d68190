"""App configurations: the Token Console app (its system checks) and the admin app with
the console's own site."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class TokensConfig(AppConfig):
    """The Token Console app."""

    name = "tokens"
    verbose_name = "Token Console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)


class TokenConsoleAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, whose default site is the console's (titles, dashboard, OTP)."""

    default = False  # named in full in INSTALLED_APPS; "tokens" means TokensConfig
    default_site = "tokens.admin.site.console_site"
