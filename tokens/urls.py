"""URLs of the connect flow, the token API, the health check and the metrics."""

from django.urls import path, re_path

from . import health, metrics, views
from .api import views as api

app_name = "tokens"

urlpatterns = [
    # Any text as the slug, so an odd one gets the API's JSON 404 rather than a page.
    re_path(r"^api/v1/orgs/(?P<slug>[^/]+)/token$", api.org_token, name="api-org-token"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("oauth/connect/<slug:slug>/", views.oauth_connect, name="oauth-connect"),
    path("oauth/callback/", views.oauth_callback, name="oauth-callback"),
    path("api/v1/openapi.json", api.openapi_document, name="api-openapi"),
    path("api/token", api.legacy_token, name="api-legacy-token"),
    # [\s\S], not ".": a path with an encoded newline (/api/x%0A) is under /api/ too.
    re_path(r"^api/(?P<path>[\s\S]*)\Z", api.not_found),
]
