"""Who is calling the token API: key and legacy-header authentication, the throttle of
failed authentications, and the client's allowed source networks.

Every check that can refuse a caller runs before anything is decrypted.
"""

import logging
import re
from typing import NoReturn

from django.http import HttpRequest

from .. import apikeys, selectors
from ..conf import app_settings
from ..providers import normalise_org_id
from ..selectors import ApiCaller, ApiOrgToken, LegacyMatch
from .errors import UNAUTHORIZED_MESSAGE, ApiError
from .throttle import auth_failures

logger = logging.getLogger("tokens.api")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
_HEADER_MAX = 256
LEGACY_HEADERS = ("X-Organization-Id", "X-From", "X-API-Phrase")


def key_authenticated(
    request: HttpRequest, address: str | None, slug: str
) -> tuple[ApiCaller, ApiOrgToken | None]:
    """The client of the request's API key, and the org of `slug` (None if there is none)
    with its token; 401 for a missing, unknown, wrong or revoked key, 403 for an address
    outside the client's networks."""
    key = apikeys.bearer_credential(request.META.get("HTTP_AUTHORIZATION", "")) or ""
    prefix = apikeys.key_prefix(key)
    if prefix is None:
        auth_failed(address)
    slug = slug if _SLUG.fullmatch(slug) else ""
    caller, record = selectors.api_token_lookup(key_prefix=prefix, slug=slug)
    if caller is None or caller.revoked or not apikeys.key_matches(key, caller.key_hash):
        auth_failed(address)
    network_check(caller, address)
    return caller, record


def legacy_authenticated(
    request: HttpRequest, address: str | None
) -> tuple[ApiCaller, ApiOrgToken]:
    """The client and the org the sample app's three headers name, with the org's token;
    401 for any header missing or wrong, 403 for an address outside the client's
    networks, 409 when the client may read several orgs bound to the org id."""
    headers = [request.headers.get(name, "") for name in LEGACY_HEADERS]
    if not all(headers) or any(len(value) > _HEADER_MAX for value in headers):
        auth_failed(address)
    provider_org_id, sender, passphrase = headers
    match = selectors.api_legacy_lookup(
        provider_org_id=normalise_org_id(provider_org_id) or provider_org_id, sender=sender
    )
    caller = _legacy_caller(match, passphrase)
    if caller is None:
        auth_failed(address)
    network_check(caller, address)
    readable = match.readable[caller.id]
    if len(readable) > 1:
        raise ApiError(
            409,
            "ambiguous_org",
            f"{len(readable)} orgs this client may read are bound to this X-Organization-Id: "
            "an admin must give each org its own provider org id, or narrow the client's "
            "orgs. Or use /api/v1/orgs/<slug>/token, which names the org.",
        )
    return caller, readable[0]


def _legacy_caller(match: LegacyMatch, passphrase: str) -> ApiCaller | None:
    """The client whose passphrase this is, at the cost of one passphrase hash at most.

    Only one candidate is ever checked, so a failure costs the same whether the org id,
    the X-From or several clients exist. Several clients sharing the X-From for the org
    (old data: the admin refuses it now) are refused rather than tried one by one.
    """
    candidates = match.callers
    if len(candidates) > 1:
        logger.warning(
            "legacy /api/token refused: API clients %s share one X-From for this org; "
            "give each its own X-From",
            ", ".join(repr(caller.name) for caller in candidates),
        )
    caller = candidates[0] if len(candidates) == 1 else None
    stored = caller.legacy_passphrase_hash if caller else ""
    return caller if apikeys.passphrase_matches(passphrase, stored) else None


def network_check(caller: ApiCaller, address: str | None) -> None:
    """403 unless the address lies in the client's allowed networks (none: any address)."""
    if not apikeys.address_allowed(address, apikeys.networks_parse(caller.allowed_networks)):
        raise ApiError(
            403, "source_not_allowed", "This API client may not be used from this address."
        )


def throttle_check(address: str | None) -> None:
    """429 when the address has failed to authenticate too often lately."""
    if auth_failures.blocked(address):
        raise ApiError(
            429,
            "too_many_failures",
            "Too many failed authentications from this address. Try again later.",
            retry_after=app_settings.API_AUTH_FAILURE_WINDOW,
        )


def auth_failed(address: str | None) -> NoReturn:
    """Count a failed authentication from the address and answer 401."""
    auth_failures.failed(address)
    raise ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE)
