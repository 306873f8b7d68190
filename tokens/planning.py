"""When a token should be refreshed: pure functions of times and settings."""

import random
from datetime import datetime, timedelta

from .conf import app_settings


def plan_next_refresh(*, obtained_at: datetime, access_expires_at: datetime) -> datetime:
    """Return when to refresh an access token obtained at `obtained_at`.

    Once REFRESH_AT_FRACTION of its life has passed, and never later than
    REFRESH_MARGIN_MAX before expiry; a little random jitter moves it earlier, so
    orgs connected in the same minute spread out. A refresh token is used at least
    every REFRESH_TOKEN_KEEPALIVE_DAYS, so one that expires when idle stays alive.
    """
    lifetime = max(access_expires_at - obtained_at, timedelta(0))
    by_fraction = obtained_at + lifetime * app_settings.REFRESH_AT_FRACTION
    by_margin = access_expires_at - timedelta(seconds=app_settings.REFRESH_MARGIN_MAX)
    keepalive = obtained_at + timedelta(days=app_settings.REFRESH_TOKEN_KEEPALIVE_DAYS)
    # A token shorter-lived than the margin is refreshed by the fraction alone,
    # not at once (which would refresh it on every sweep).
    planned = min(by_fraction, keepalive)
    if by_margin > obtained_at:
        planned = min(planned, by_margin)
    jitter = lifetime * (app_settings.REFRESH_JITTER_FRACTION * random.random())
    return max(planned - jitter, obtained_at)


def retry_delay(*, failures: int, retry_after: float | None) -> timedelta:
    """Backoff after the n-th consecutive transient failure: exponential, capped, jittered.

    Full jitter in the upper half keeps retries of many orgs from moving in lockstep;
    the provider's Retry-After is honoured when it asks for longer, up to RETRY_AFTER_MAX
    (a larger one would overflow timedelta or park the org for years).
    """
    ceiling = min(
        app_settings.RETRY_MAX_DELAY,
        app_settings.RETRY_BASE_DELAY * 2 ** max(failures - 1, 0),
    )
    delay = ceiling * (0.5 + random.random() / 2)
    asked = min(retry_after or 0, app_settings.RETRY_AFTER_MAX)
    return timedelta(seconds=max(delay, asked))
