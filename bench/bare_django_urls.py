"""One view in front of the console's URLs that answers the token API's path with a
constant token: what serving through Django costs before the API does any work."""

from django.http import HttpRequest, HttpResponse
from django.urls import re_path

from bench.bare_wsgi import BODY
from tokenconsole.urls import urlpatterns as console_urlpatterns


def constant_token(request: HttpRequest, slug: str) -> HttpResponse:
    """The same answer for every org, with no lookup."""
    response = HttpResponse(BODY, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    re_path(r"^api/v1/orgs/(?P<slug>[^/]+)/token$", constant_token),
    *console_urlpatterns,
]
