"""Root URLs: the admin is the console; the app adds the OAuth flow."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Token Console"
admin.site.site_title = "Token Console"
admin.site.index_title = "Orgs, tokens and their history"

urlpatterns = [
    # The app's URLs first: the token API is the hot path, resolved before the admin's.
    path("", include("tokens.urls")),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]
