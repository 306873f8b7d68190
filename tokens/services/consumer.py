"""What an API consumer gets: an org's usable access token, refreshed first when needed.

The token API authenticates the caller and finds the org (selectors.api_token_lookup or
api_legacy_lookup); this decides whether the token can be served as it is, refreshes it
on demand through token_refresh, and says why not otherwise. The views only translate
its exceptions into HTTP answers.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tokens import clock, selectors
from tokens.conf import app_settings
from tokens.exceptions import EncryptionKeyError, OrgNotRefreshable, TokenExpired, TokenUnavailable
from tokens.logs import log_event
from tokens.models import Org, TokenEvent
from tokens.selectors import ApiOrgToken

from .refresh import token_refresh

logger = logging.getLogger(__name__)
# When the planned retry is unknown, a consumer is told to come back after this long.
_RETRY_AFTER_UNKNOWN = 60


@dataclass(frozen=True)
class ConsumerToken:
    """An org's access token as the token API serves it. Holds a secret: never log it."""

    org_id: int
    slug: str
    provider_org_id: str
    cluster_id: str
    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime


def token_for_consumer(*, record: ApiOrgToken) -> ConsumerToken:
    """The org's access token for a consumer, refreshed first when it expires within
    API_REFRESH_MARGIN (token_refresh applies API_MIN_REFRESH_INTERVAL and backoff).

    Raises TokenUnavailable when the org cannot serve a token (pending, disabled, needs a
    reconnect, or no configured key decrypts it) and TokenExpired when it has expired and
    the provider could not give a new one.
    """
    if record.status != Org.Status.CONNECTED or record.access_expires_at is None:
        raise _unavailable(record)
    margin = timedelta(seconds=app_settings.API_REFRESH_MARGIN)
    if record.access_expires_at <= clock.now() + margin:
        record = _refreshed(record, margin)
    try:
        access_token = selectors.api_access_token(record)
    except EncryptionKeyError as error:
        raise _undecryptable(record, error) from None
    return ConsumerToken(
        org_id=record.org_id, slug=record.slug, provider_org_id=record.provider_org_id,
        cluster_id=record.cluster_id, access_token=access_token,
        token_type=record.token_type or "", expires_at=record.access_expires_at,
    )  # fmt: skip


def _refreshed(record: ApiOrgToken, margin: timedelta) -> ApiOrgToken:
    """Refresh on demand (single flight, waiting for one in flight) and read the result."""
    try:
        result = token_refresh(
            org_id=record.org_id, trigger=TokenEvent.Trigger.API, wait=True,
            expiring_within=margin,
        )  # fmt: skip
    except OrgNotRefreshable:
        result = None
    fresh = selectors.api_org_token(org_id=record.org_id, in_scope=record.in_scope)
    if fresh is None:  # deleted meanwhile
        raise TokenUnavailable("There is no org with this slug.", reason="pending")
    if result is None or result.outcome == "needs_reconnect" or fresh.access_expires_at is None:
        raise _unavailable(fresh)
    now = clock.now()
    if fresh.access_expires_at <= now:
        wait = (fresh.next_refresh_at - now).total_seconds() if fresh.next_refresh_at else None
        raise TokenExpired(
            "The provider could not be reached and the org's access token has expired. "
            "Try again later.",
            retry_after=max(1, int(wait if wait is not None else _RETRY_AFTER_UNKNOWN)),
        )
    return fresh


def _unavailable(record: ApiOrgToken) -> TokenUnavailable:
    """Why an org serves no token, from its status."""
    status, status_reason = record.status, record.status_reason
    if status == Org.Status.NEEDS_RECONNECT:
        detail = f": {status_reason}" if status_reason else "."
        message = f"The org must be reconnected by an admin{detail}"
        return TokenUnavailable(message, reason="needs_reconnect", status_reason=status_reason)
    if status == Org.Status.DISABLED:
        return TokenUnavailable("The org is disabled.", reason="disabled")
    if status == Org.Status.CONNECTED:  # connected, but without a (refresh) token
        return TokenUnavailable(
            "The org holds no refresh token: an admin must reconnect it.", reason="needs_reconnect"
        )
    return TokenUnavailable("The org has not been connected yet.", reason="pending")


def _undecryptable(record: ApiOrgToken, error: EncryptionKeyError) -> TokenUnavailable:
    """No configured key decrypts the stored access token: the org needs a reconnect
    (the next refresh attempt marks it so, with the same reason)."""
    log_event(
        logger, logging.WARNING, "api_token_undecryptable", org=record.slug,
        error=error.error_code,
    )  # fmt: skip
    status_reason = f"{error.error_code}: no configured key decrypts the stored access token."
    return TokenUnavailable(
        f"The org must be reconnected by an admin: {status_reason}",
        reason="needs_reconnect",
        status_reason=status_reason,
    )
