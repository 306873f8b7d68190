"""django-q2 entry points: thin wrappers over the services."""

import logging

from django.contrib.auth import get_user_model

from . import services
from .conf import app_settings
from .exceptions import OrgNotRefreshable
from .models import Org

logger = logging.getLogger(__name__)


def refresh_org(
    org_id: int, trigger: str = "schedule", actor_id: int | None = None, force: bool = False
) -> str:
    """Refresh one org; the service, not the queue, handles and retries provider failures."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        result = services.token_refresh(org_id=org_id, trigger=trigger, actor=actor, force=force)
    except (OrgNotRefreshable, Org.DoesNotExist) as exc:
        logger.info("refresh skipped org_id=%s reason=%s", org_id, exc)
        return f"skipped: {exc}"
    return f"{result.org_slug}: {result.outcome}"


def sweep_due_orgs() -> str:
    """The per-minute schedule: dispatch due refreshes and send refresh-token expiry warnings."""
    dispatched = services.refresh_dispatch_due()
    warned = services.refresh_expiry_alerts_send()
    return f"dispatched {dispatched}, expiry warnings {warned}"


def prune_token_events() -> str:
    """The daily schedule: delete token events past TOKEN_EVENT_RETENTION_DAYS (0: none)."""
    days = app_settings.TOKEN_EVENT_RETENTION_DAYS
    if days <= 0:
        return "retention is off (TOKEN_EVENT_RETENTION_DAYS=0): nothing pruned"
    result = services.token_events_prune(days=days, batch_size=app_settings.TOKEN_EVENT_PRUNE_BATCH)
    logger.info("token history pruned: %s", result.summary())
    return result.summary()
