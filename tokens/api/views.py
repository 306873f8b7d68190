"""The token API: a consumer's key buys a currently valid access token for an org.

`GET /api/v1/orgs/<slug>/token` with `Authorization: Bearer tc_…`, and `GET /api/token`
with the sample app's headers for flows not yet moved. Every answer is JSON with
`Cache-Control: no-store`; every error is `{"error": code, "message": text}`, an
unexpected one too (500 `internal_error`, the exception logged, never an HTML page). The hot
path is one indexed query (the client by key prefix, the org by slug, its token and the
client's scope together), and writes nothing per request.
"""

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache, wraps
from pathlib import Path
from typing import NoReturn

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from .. import apikeys, clock, selectors, services
from ..conf import app_settings
from ..exceptions import OrgNotRefreshable
from ..models import ApiClient, Org, Token
from ..providers import normalise_org_id
from ..selectors import ApiOrgToken
from .throttle import auth_failures

logger = logging.getLogger(__name__)
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
_HEADER_MAX = 256
UNAUTHORIZED_MESSAGE = "Missing, unknown or revoked API key."
INTERNAL_ERROR_MESSAGE = (
    "The token console failed to answer this request; the error is logged. Try again later."
)
# Unexpected errors, with their traceback; the handlers' redaction filter keeps secrets out.
logger = logging.getLogger("tokens.api")


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
    """GET and HEAD only, ApiError and unexpected errors as JSON, never cached, no CSRF
    (no cookies are used)."""

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
            except Exception:
                logger.exception("event=api_error path=%s", request.path)
                response = _internal_error()
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an error outside the API's views still answers /api/ in JSON."""
    if not request.path_info.startswith("/api/"):
        return defaults.server_error(request)
    response = _internal_error()
    response["Cache-Control"] = "no-store"
    return response


def _internal_error() -> JsonResponse:
    return ApiError(500, "internal_error", INTERNAL_ERROR_MESSAGE).response()


@api_view
def org_token(request: HttpRequest, slug: str) -> HttpResponse:
    """An org's access token, refreshed first when it is about to expire."""
    address = source_address(request)
    _throttle_check(address)
    key = apikeys.bearer_credential(request.META.get("HTTP_AUTHORIZATION", "")) or ""
    prefix = apikeys.key_prefix(key)
    if prefix is None:
        _auth_failed(address)
    slug = slug if _SLUG.fullmatch(slug) else ""
    caller, record = selectors.api_token_lookup(key_prefix=prefix, slug=slug)
    if caller is None or caller.revoked or not apikeys.key_matches(key, caller.key_hash):
        _auth_failed(address)
    _check_network(caller.allowed_networks, address)
    if record is None:
        raise ApiError(404, "org_not_found", "There is no org with this slug.")
    if not (caller.all_orgs or record.in_scope):
        raise ApiError(403, "org_not_allowed", "This API client may not read this org.")
    record = _usable(record)
    body = {
        "access_token": record.access_token,
        "token_type": record.token_type,
        "expires_at": record.access_expires_at.isoformat().replace("+00:00", "Z"),
        "expires_in": max(0, int((record.access_expires_at - clock.now()).total_seconds())),
        "org": record.slug,
        "provider_org_id": record.provider_org_id,
        "cluster_id": record.cluster_id,
    }
    return _served(request, record, caller.id, caller.last_used_at, body)


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
    match = selectors.api_legacy_lookup(
        provider_org_id=normalise_org_id(provider_org_id) or provider_org_id, sender=sender
    )
    client = _legacy_client(match.clients, passphrase)
    if client is None:
        _auth_failed(address)
    _check_network(client.allowed_networks, address)
    org = _legacy_org(client, match.orgs)
    if org is None:
        _auth_failed(address)
    record = _usable(selectors.api_org_token(org=org))
    body = {"access_token": record.access_token}
    return _served(request, record, client.pk, client.last_used_at, body)


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


def _check_network(allowed_networks: str, address: str | None) -> None:
    if not apikeys.address_allowed(address, apikeys.networks_parse(allowed_networks)):
        raise ApiError(
            403, "source_not_allowed", "This API client may not be used from this address."
        )


def _usable(record: ApiOrgToken) -> ApiOrgToken:
    """The org's token, refreshed on demand when it expires within API_REFRESH_MARGIN."""
    if record.status != Org.Status.CONNECTED or record.access_expires_at is None:
        raise _not_connected(record.org_id)
    margin = timedelta(seconds=app_settings.API_REFRESH_MARGIN)
    if record.access_expires_at > clock.now() + margin:
        return record
    try:
        result = services.token_refresh(
            org_id=record.org_id, trigger="api", wait=True, expiring_within=margin
        )
    except OrgNotRefreshable:
        raise _not_connected(record.org_id) from None
    if result.outcome == "needs_reconnect":
        raise _not_connected(record.org_id)
    org = Org.objects.get(pk=record.org_id)
    record = selectors.api_org_token(org=org, in_scope=record.in_scope)
    if record.access_expires_at <= clock.now():
        raise _provider_unavailable(org)
    return record


def _not_connected(org_id: int) -> ApiError:
    org = Org.objects.get(pk=org_id)
    reason = f": {org.status_reason}" if org.status_reason else "."
    if org.status == Org.Status.NEEDS_RECONNECT:
        return ApiError(409, "needs_reconnect", f"The org must be reconnected by an admin{reason}")
    if org.status == Org.Status.DISABLED:
        return ApiError(409, "disabled", "The org is disabled.")
    if org.status == Org.Status.CONNECTED:  # connected, but without a refresh token
        return ApiError(
            409, "needs_reconnect", "The org holds no refresh token: an admin must reconnect it."
        )
    return ApiError(409, "pending", "The org has not been connected yet.")


def _provider_unavailable(org: Org) -> ApiError:
    next_attempt = Token.objects.filter(org=org).values_list("next_refresh_at", flat=True).first()
    wait = (next_attempt - clock.now()).total_seconds() if next_attempt else 60
    return ApiError(
        503,
        "provider_unavailable",
        "The provider could not be reached and the org's access token has expired. "
        "Try again later.",
        retry_after=max(1, int(wait)),
    )


def _served(
    request: HttpRequest,
    record: ApiOrgToken,
    client_id: int,
    last_used_at: datetime | None,
    body: dict,
) -> HttpResponse:
    if request.method == "HEAD":
        return HttpResponse(content_type="application/json")
    services.served_record(org_id=record.org_id, client_id=client_id)
    services.api_client_touch(client_id=client_id, last_used_at=last_used_at, now=clock.now())
    return JsonResponse(body)


def _legacy_client(candidates: list[ApiClient], passphrase: str) -> ApiClient | None:
    """The client whose passphrase this is, at the cost of one passphrase hash at most.

    Only one candidate is ever checked, so a failure costs the same whether the org id,
    the X-From or several clients exist. Several clients sharing the X-From for the org
    (old data: the admin refuses it now) are refused rather than tried one by one.
    """
    if len(candidates) > 1:
        logger.warning(
            "legacy /api/token refused: API clients %s share one X-From for this org; "
            "give each its own X-From",
            ", ".join(repr(client.name) for client in candidates),
        )
    client = candidates[0] if len(candidates) == 1 else None
    stored = client.legacy_passphrase_hash if client else ""
    return client if apikeys.passphrase_matches(passphrase, stored) else None


def _legacy_org(client: ApiClient, orgs: list[Org]) -> Org | None:
    """The one org the client may read among those bound to the requested provider org id."""
    readable = selectors.api_legacy_readable(client=client, orgs=orgs)
    if len(readable) > 1:
        raise ApiError(
            409,
            "ambiguous_org",
            f"{len(readable)} orgs this client may read are bound to this X-Organization-Id: "
            "an admin must give each org its own provider org id, or narrow the client's "
            "orgs. Or use /api/v1/orgs/<slug>/token, which names the org.",
        )
    return readable[0] if readable else None


def _throttle_check(address: str | None) -> None:
    if auth_failures.blocked(address):
        raise ApiError(
            429,
            "too_many_failures",
            "Too many failed authentications from this address. Try again later.",
            retry_after=app_settings.API_AUTH_FAILURE_WINDOW,
        )


def _auth_failed(address: str | None) -> NoReturn:
    auth_failures.failed(address)
    raise ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE)
