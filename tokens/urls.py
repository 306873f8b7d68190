"""URLs of the connect flow."""

from django.urls import path

from . import views

app_name = "tokens"

urlpatterns = [
    path("oauth/connect/<slug:slug>/", views.oauth_connect, name="oauth-connect"),
    path("oauth/callback/", views.oauth_callback, name="oauth-callback"),
]
