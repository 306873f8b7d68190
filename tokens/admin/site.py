"""The console's admin site: its titles, and the dashboard on the index page."""

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from tokens import clock, selectors
from tokens.timeline import expiry_timeline_svg
from tokens.twofactor import staff_2fa_required, staff_access_allowed

from .org import STATUS_COLOURS
from .twofactor import OTP_LOGIN_TEMPLATE, StaffOTPAuthenticationForm

# The admin's names for third-party apps whose own read as code ("OTP_STATIC").
APP_NAMES = {
    "otp_static": "Backup codes",
    "otp_totp": "Authenticator apps (TOTP)",
}


class TokenConsoleAdminSite(admin.AdminSite):
    """The Django admin as the operator's console.

    With REQUIRE_STAFF_2FA it behaves as django-otp's OTPAdminSite: the login form asks
    for a one-time code and only sessions confirmed by an OTP device get in. The switch is
    read per request, so tests (and settings overrides) can turn it on and off.
    """

    site_header = "Token Console"
    site_title = "Token Console"
    index_title = "Orgs, tokens and their history"
    index_template = "admin/tokens/index.html"

    @property
    def login_form(self) -> type | None:
        """The login form: with the OTP code field when staff need a second factor."""
        return StaffOTPAuthenticationForm if staff_2fa_required() else None

    @property
    def login_template(self) -> str | None:
        """The login page: with the OTP code field when staff need a second factor."""
        return OTP_LOGIN_TEMPLATE if staff_2fa_required() else None

    def has_permission(self, request: HttpRequest) -> bool:
        """Active staff, whose sign-in was confirmed by OTP when that is required."""
        return super().has_permission(request) and staff_access_allowed(request.user)

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        """The app list, with the dashboard above it for those who may see orgs."""
        context = dict(extra_context or {})
        if request.user.has_perm("tokens.view_org"):
            now = clock.now()
            dashboard = selectors.dashboard_figures(now=now)
            context["dashboard"] = dashboard
            context["status_cards"] = [
                (status, label, count, STATUS_COLOURS.get(status, "#777"))
                for status, label, count in dashboard.status_counts
            ]
            context["timeline_svg"] = expiry_timeline_svg(dashboard.timeline, now=now)
        return super().index(request, context)

    def each_context(self, request: HttpRequest) -> dict:
        """Every page's context, with the time zone its times are shown in (the footer)."""
        return {**super().each_context(request), "console_time_zone": settings.TIME_ZONE}

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        """The Token Console first, then the rest; the OTP apps under readable names."""
        apps = super().get_app_list(request, app_label)
        for app in apps:
            app["name"] = APP_NAMES.get(app["app_label"], app["name"])
        return sorted(apps, key=lambda app: app["app_label"] != "tokens")


# The one site: every admin in this package registers on it explicitly (tokens/admin/
# __init__.py), and django.contrib.admin's lazy `admin.site` resolves to it through
# tokens.apps.TokenConsoleAdminConfig.default_site, so third-party admins join it too.
site = TokenConsoleAdminSite()


def console_site() -> TokenConsoleAdminSite:
    """The console's admin site (TokenConsoleAdminConfig.default_site)."""
    return site
