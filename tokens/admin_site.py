"""The console's admin site: its titles, and the dashboard on the index page."""

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from . import clock, selectors
from .timeline import expiry_timeline_svg


class TokenConsoleAdminSite(admin.AdminSite):
    """The Django admin as the operator's console."""

    site_header = "Token Console"
    site_title = "Token Console"
    index_title = "Orgs, tokens and their history"
    index_template = "admin/tokens/index.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        """The app list, with the dashboard above it for those who may see orgs."""
        context = dict(extra_context or {})
        if request.user.has_perm("tokens.view_org"):
            now = clock.now()
            dashboard = selectors.dashboard_figures(now=now)
            context["dashboard"] = dashboard
            context["timeline_svg"] = expiry_timeline_svg(dashboard.timeline, now=now)
        return super().index(request, context)
