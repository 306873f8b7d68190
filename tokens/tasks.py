"""django-q2 entry points: thin wrappers over the services."""

import logging

from django.contrib.auth import get_user_model

from . import services
from .conf import app_settings
from .exceptions import OrgNotRefreshable
from .models import Org, TokenEvent

logger = logging.getLogger(__name__)


def refresh_org(
    org_id: int,
    trigger: str = TokenEvent.Trigger.SCHEDULE,
    actor_id: int | None = None,
    force: bool = False,
) -> str:
    """Refresh one org; the service, not the queue, handles and retries provider failures."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        result = services.token_refresh(
            # A task queued by an older release carries the trigger as a plain string.
            org_id=org_id,
            trigger=TokenEvent.Trigger(trigger),
            actor=actor,
            force=force,
        )
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


def deliver_webhook(delivery_id: int) -> str:
    """Attempt one webhook delivery; the row, not the queue, plans any retry."""
    from .services.webhooks import webhook_delivery_attempt

    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    return f"{delivery.event_id}: {delivery.status}" if delivery else "not due"


def send_alert(message_id: int) -> str:
    """Send one admin alert through its channel; a failure is retried by the sweep."""
    from .services.alert_channels import alert_message_send

    message = alert_message_send(message_id=message_id)
    return f"{message.pk}: {message.status}" if message else "not due"


def sweep_webhooks() -> str:
    """The per-minute webhook schedule: queue due deliveries and alerts, prune old rows."""
    from .services.alert_channels import alert_messages_dispatch_due, alert_messages_prune
    from .services.webhooks import webhook_deliveries_dispatch_due, webhook_deliveries_prune

    deliveries = webhook_deliveries_dispatch_due()
    alerts = alert_messages_dispatch_due()
    pruned = webhook_deliveries_prune()
    pruned_alerts = alert_messages_prune()
    return (
        f"deliveries {deliveries}, alerts {alerts}, "
        f"pruned deliveries {pruned}, pruned alerts {pruned_alerts}"
    )
