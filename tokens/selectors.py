"""What reads token state: due orgs for the sweep, expiring refresh tokens."""

from datetime import datetime, timedelta

from django.db.models import Q

from .conf import app_settings
from .models import Integration, Org, Token


def tokens_due(*, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(org id, integration id) of connected orgs whose refresh is due and not yet queued.

    Ordered by next_refresh_at, so the index on it answers the query; the other
    conditions only thin out the (small) due range.
    """
    rows = (
        Token.objects.filter(next_refresh_at__lte=now, org__status=Org.Status.CONNECTED)
        .filter(Q(dispatched_until__isnull=True) | Q(dispatched_until__lte=now))
        .filter(Q(refreshing_until__isnull=True) | Q(refreshing_until__lte=now))
        .order_by("next_refresh_at")
        .values_list("org_id", "org__integration_id")[:limit]
    )
    return list(rows)


def integration_budgets(*, now: datetime, integration_ids: set[int]) -> dict[int, int]:
    """How many refreshes each integration may start in this sweep (0 while throttled)."""
    budgets = {}
    for integration in Integration.objects.filter(pk__in=integration_ids):
        throttled = integration.throttled_until and integration.throttled_until > now
        budgets[integration.pk] = 0 if throttled else integration.rate_per_minute
    return budgets


def refresh_tokens_expiring(*, now: datetime) -> list[Token]:
    """Connected orgs whose refresh token expires within the warning window, not yet alerted."""
    horizon = now + timedelta(days=app_settings.REFRESH_EXPIRY_WARNING_DAYS)
    candidates = Token.objects.filter(
        org__status=Org.Status.CONNECTED, refresh_expires_at__lte=horizon
    ).select_related("org")
    return [t for t in candidates if t.expiry_alerted_fingerprint != t.refresh_fingerprint]
