"""The token API: a consumer's key buys a currently valid access token for an org.

`GET /api/v1/orgs/<slug>/token` with `Authorization: Bearer tc_…`, and `GET /api/token`
with the sample app's headers for flows not yet moved. Every answer is JSON with
`Cache-Control: no-store`; every error is `{"error": code, "message": text}`. The hot
path is two indexed queries (the client by key prefix; the org, its token and the
client's scope in one), and writes nothing per request.
"""

import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import cache, wraps
from pathlib import Path
from typing import NoReturn

from django.core.cache import cache as django_cache
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import apikeys, clock, services
from .conf import app_settings
from .exceptions import OrgNotRefreshable
from .models import ApiClient, Org, Token
from .providers import decode_webex_org_id

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
_HEADER_MAX = 256
UNAUTHORIZED_MESSAGE = "Missing, unknown or revoked API key."


class ApiError(Exception):
    """An API answer other than 200: its status, error code and message (never a secret)."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def response(self) -> JsonResponse:
        """The JSON error response."""
        response = JsonResponse({"error": self.code, "message": self.message}, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET and HEAD only, ApiError as JSON, never cached, no CSRF (no cookies are used)."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = ApiError(
                405, "method_not_allowed", "Only GET and HEAD are allowed here."
            ).response()
            response["Allow"] = "GET, HEAD"
        else:
            try:
                response = view(request, *args, **kwargs)
            except ApiError as error:
                response = error.response()
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


@api_view
def org_token(request: HttpRequest, slug: str) -> HttpResponse:
    """An org's access token, refreshed first when it is about to expire."""
    address = source_address(request)
    client = _client_by_bearer(request, address)
    org = _org_for_client(client, slug)
    token = _usable_token(org)
    now = clock.now()
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": token.access_expires_at.isoformat().replace("+00:00", "Z"),
        "expires_in": max(0, int((token.access_expires_at - now).total_seconds())),
        "org": org.slug,
        "provider_org_id": org.provider_org_id,
        "cluster_id": org.cluster_id,
    }
    return _served(request, org, client, body)


@api_view
def legacy_token(request: HttpRequest) -> HttpResponse:
    """The sample app's /api/token: its three headers in, `{"access_token"}` out."""
    address = source_address(request)
    _throttle_check(address)
    headers = [
        request.headers.get(name, "") for name in ("X-Organization-Id", "X-From", "X-API-Phrase")
    ]
    if not all(headers) or any(len(value) > _HEADER_MAX for value in headers):
        _auth_failed(address)
    provider_org_id, sender, passphrase = headers
    org = _legacy_org(provider_org_id)
    client = _legacy_client(org, sender, passphrase) if org else None
    if org is None or client is None:
        _auth_failed(address)
    _check_network(client, address)
    token = _usable_token(org)
    return _served(request, org, client, {"access_token": token.access_token})


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


def source_address(request: HttpRequest) -> str | None:
    """The caller's address: REMOTE_ADDR, or the X-Forwarded-For entry that the configured
    number of trusted proxies vouches for. None when it cannot be told."""
    hops = app_settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return request.META.get("REMOTE_ADDR") or None
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < hops:
        return None  # fewer hops than proxies: the header was not written by them
    return apikeys.address_normalise(forwarded[-hops])


def _client_by_bearer(request: HttpRequest, address: str | None) -> ApiClient:
    _throttle_check(address)
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    prefix = apikeys.key_prefix(key.strip()) if scheme.lower() == "bearer" else None
    client = ApiClient.objects.filter(key_prefix=prefix).first() if prefix else None
    if client is None or client.is_revoked or not apikeys.key_matches(key.strip(), client.key_hash):
        _auth_failed(address)
    _check_network(client, address)
    return client


def _check_network(client: ApiClient, address: str | None) -> None:
    if not apikeys.address_allowed(address, client.networks()):
        raise ApiError(
            403, "source_not_allowed", "This API client may not be used from this address."
        )


def _org_for_client(client: ApiClient, slug: str) -> Org:
    org = None
    if _SLUG.fullmatch(slug):
        scope = ApiClient.orgs.through.objects.filter(apiclient_id=client.pk, org_id=OuterRef("pk"))
        org = (
            Org.objects.filter(slug=slug)
            .select_related("token")
            .defer("token__refresh_token")
            .annotate(in_scope=Exists(scope))
            .first()
        )
    if org is None:
        raise ApiError(404, "org_not_found", "There is no org with this slug.")
    if not (client.all_orgs or org.in_scope):
        raise ApiError(403, "org_not_allowed", "This API client may not read this org.")
    return org


def _usable_token(org: Org) -> Token:
    """The org's token, refreshed on demand when it expires within API_REFRESH_MARGIN."""
    if org.status != Org.Status.CONNECTED or not hasattr(org, "token"):
        raise _not_connected(org)
    margin = timedelta(seconds=app_settings.API_REFRESH_MARGIN)
    if org.token.access_expires_at > clock.now() + margin:
        return org.token
    try:
        result = services.token_refresh(
            org_id=org.pk, trigger="api", wait=True, expiring_within=margin
        )
    except OrgNotRefreshable:
        org.refresh_from_db(fields=["status", "status_reason"])
        raise _not_connected(org) from None
    if result.outcome == "needs_reconnect":
        org.refresh_from_db(fields=["status", "status_reason"])
        raise _not_connected(org)
    token = Token.objects.defer("refresh_token").get(org_id=org.pk)
    now = clock.now()
    if token.access_expires_at <= now:
        retry = token.next_refresh_at - now if token.next_refresh_at else timedelta(seconds=60)
        raise ApiError(
            503,
            "provider_unavailable",
            "The provider could not be reached and the org's access token has expired. "
            "Try again later.",
            retry_after=max(1, int(retry.total_seconds())),
        )
    return token


def _not_connected(org: Org) -> ApiError:
    reason = f": {org.status_reason}" if org.status_reason else "."
    if org.status == Org.Status.NEEDS_RECONNECT:
        return ApiError(409, "needs_reconnect", f"The org must be reconnected by an admin{reason}")
    if org.status == Org.Status.DISABLED:
        return ApiError(409, "disabled", "The org is disabled.")
    return ApiError(409, "pending", "The org has not been connected yet.")


def _served(request: HttpRequest, org: Org, client: ApiClient, body: dict) -> HttpResponse:
    if request.method == "HEAD":
        return HttpResponse(content_type="application/json")
    services.served_record(org_id=org.pk, client_id=client.pk)
    services.api_client_touch(client=client, now=clock.now())
    return JsonResponse(body)


def _legacy_org(provider_org_id: str) -> Org | None:
    """The org the sample's X-Organization-Id names (a UUID, or Webex's base64 org id)."""
    try:
        normalised = str(uuid.UUID(provider_org_id))
    except ValueError:
        normalised = decode_webex_org_id(provider_org_id) or provider_org_id
    return (
        Org.objects.filter(provider_org_id=normalised)
        .select_related("token")
        .defer("token__refresh_token")
        .first()
    )


def _legacy_client(org: Org, sender: str, passphrase: str) -> ApiClient | None:
    candidates = ApiClient.objects.filter(revoked_at__isnull=True).exclude(legacy_from="")
    candidates = candidates.filter(all_orgs=True) | candidates.filter(orgs=org)
    for client in candidates.distinct():
        from_matches = apikeys.constant_time_equal(client.legacy_from, sender)
        if apikeys.passphrase_matches(passphrase, client.legacy_passphrase_hash) and from_matches:
            return client
    return None


def _failures_key(address: str | None) -> str:
    return f"tokens:api-auth-failures:{address or 'unknown'}"


def _throttle_check(address: str | None) -> None:
    if django_cache.get(_failures_key(address), 0) >= app_settings.API_AUTH_FAILURE_LIMIT:
        raise ApiError(
            429,
            "too_many_failures",
            "Too many failed authentications from this address. Try again later.",
            retry_after=app_settings.API_AUTH_FAILURE_WINDOW,
        )


def _auth_failed(address: str | None) -> NoReturn:
    key = _failures_key(address)
    if not django_cache.add(key, 1, timeout=app_settings.API_AUTH_FAILURE_WINDOW):
        try:
            django_cache.incr(key)
        except ValueError:  # expired between add and incr
            django_cache.add(key, 1, timeout=app_settings.API_AUTH_FAILURE_WINDOW)
    raise ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE)
