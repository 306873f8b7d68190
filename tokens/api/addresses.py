"""The caller's source address, as the token API, the admin lockout and /metrics see it."""

from django.http import HttpRequest

from .. import apikeys
from ..conf import app_settings


def source_address(request: HttpRequest) -> str | None:
    """The caller's address: REMOTE_ADDR, or the X-Forwarded-For entry that the configured
    number of trusted proxies (TRUSTED_PROXY_COUNT) vouches for. None when it cannot be told."""
    hops = app_settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return request.META.get("REMOTE_ADDR") or None
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < hops:
        return None  # fewer hops than proxies: the header was not written by them
    return apikeys.address_normalise(forwarded[-hops])
