"""django.contrib.admin with the console's own site (titles, dashboard)."""

from django.contrib.admin.apps import AdminConfig


class TokenConsoleAdminConfig(AdminConfig):
    """The admin app, whose default site is TokenConsoleAdminSite."""

    default_site = "tokens.admin_site.TokenConsoleAdminSite"
