"""Root URLs: the admin is the console; the app adds the OAuth flow."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # The app's URLs first: the token API is the hot path, resolved before the admin's.
    path("", include("tokens.urls")),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]

# Unexpected errors under /api/ answer JSON, like every other API answer.
handler500 = "tokens.api.views.server_error"
