"""When a token should be refreshed: pure functions of times and settings."""

import random
from datetime import datetime, timedelta

from .conf import app_settings


def plan_next_refresh(*, obtained_at: datetime, access_expires_at: datetime) -> datetime:
    """Return when to refresh an access token obtained at `obtained_at`.

    Once REFRESH_AT_FRACTION of its life has passed, and never later than
    REFRESH_MARGIN_MAX before expiry; a little random jitter moves it earlier, so
    orgs connected in the same minute spread out.
    """
    lifetime = max(access_expires_at - obtained_at, timedelta(0))
    by_fraction = obtained_at + lifetime * app_settings.REFRESH_AT_FRACTION
    by_margin = access_expires_at - timedelta(seconds=app_settings.REFRESH_MARGIN_MAX)
    planned = min(by_fraction, by_margin)
    jitter = lifetime * (app_settings.REFRESH_JITTER_FRACTION * random.random())
    return max(planned - jitter, obtained_at)
