"""The token API's endpoints: authenticate (auth.py), ask the service for the token,
translate its exceptions into answers (errors.py)."""

import json
from functools import cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from .. import clock, services
from ..exceptions import TokenExpired, TokenUnavailable
from ..models import Org
from ..selectors import ApiCaller, ApiOrgToken
from . import auth
from .addresses import source_address
from .errors import ApiError, api_view, internal_error

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@api_view
def org_token(request: HttpRequest, slug: str) -> HttpResponse:
    """An org's access token, refreshed first when it is about to expire."""
    address = source_address(request)
    auth.throttle_check(address)
    caller, record = auth.key_authenticated(request, address, slug)
    if record is None:
        raise ApiError(404, "org_not_found", "There is no org with this slug.")
    if not (caller.all_orgs or record.in_scope):
        raise ApiError(403, "org_not_allowed", "This API client may not read this org.")
    token = _token(record)
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": token.expires_at.isoformat().replace("+00:00", "Z"),
        "expires_in": max(0, int((token.expires_at - clock.now()).total_seconds())),
        "org": token.slug,
        "provider_org_id": token.provider_org_id,
        "cluster_id": token.cluster_id,
    }
    return _served(request, token, caller, body)


@api_view
def legacy_token(request: HttpRequest) -> HttpResponse:
    """The sample app's /api/token: its three headers in, `{"access_token"}` out."""
    address = source_address(request)
    auth.throttle_check(address)
    caller, record = auth.legacy_authenticated(request, address)
    token = _token(record)
    return _served(request, token, caller, {"access_token": token.access_token})


@api_view
def openapi_document(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3 description of both token endpoints."""
    return JsonResponse(_openapi())


@cache
def _openapi() -> dict:
    return json.loads(OPENAPI_PATH.read_text())


@api_view
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /api/: a JSON 404, not an HTML page."""
    raise ApiError(404, "not_found", "No such API endpoint.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an error outside the API's views still answers /api/ in JSON."""
    if not request.path_info.startswith("/api/"):
        return defaults.server_error(request)
    response = internal_error()
    response["Cache-Control"] = "no-store"
    return response


def _token(record: ApiOrgToken) -> services.ConsumerToken:
    """The service's token, its refusals as answers: 409 with the reason, 503 expired."""
    try:
        return services.token_for_consumer(record=record)
    except TokenUnavailable as error:
        raise _unavailable(error) from None
    except TokenExpired as error:
        raise ApiError(
            503, "provider_unavailable", str(error), retry_after=error.retry_after
        ) from None


def _unavailable(error: TokenUnavailable) -> ApiError:
    """The 409 a flow can branch on: the API's own codes, spelt out (docs/api.md)."""
    if error.reason == Org.Status.NEEDS_RECONNECT:
        return ApiError(409, "needs_reconnect", str(error))
    if error.reason == Org.Status.DISABLED:
        return ApiError(409, "disabled", str(error))
    return ApiError(409, "pending", str(error))


def _served(
    request: HttpRequest, token: services.ConsumerToken, caller: ApiCaller, body: dict
) -> HttpResponse:
    if request.method == "HEAD":
        return HttpResponse(content_type="application/json")
    services.served_record(org_id=token.org_id, client_id=caller.id)
    services.api_client_touch(
        client_id=caller.id, last_used_at=caller.last_used_at, now=clock.now()
    )
    return JsonResponse(body)
