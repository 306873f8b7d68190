"""Admin alert channels: e-mail and Webex spaces, each routed the alert types it wants.

tokens.alerts decides when to alert (once per condition) and calls `alert_route` after
its transaction commits. With no enabled channel the alert is mailed to ADMINS at once,
as before channels existed. Otherwise one AlertMessage row per routed channel is
written and a django-q2 task sends it; a channel that fails is logged and retried with
backoff (ALERT_RETRY_HOURS) by the webhook sweep, never in a refresh.
"""

import logging
import random
from datetime import timedelta
from functools import partial

import requests
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.db.models import F

from tokens import clock
from tokens.conf import app_settings, webhook_cluster_name
from tokens.exceptions import AlertChannelError
from tokens.models import AlertChannel, AlertMessage

logger = logging.getLogger(__name__)

SEND_TASK = "tokens.tasks.send_alert"
WEBEX_MESSAGES_PATH = "/v1/messages"
# The longest error an alert message keeps (its column's); a longer one is cut to fit.
ERROR_MAX_LENGTH = AlertMessage._meta.get_field("error").max_length

Status = AlertMessage.Status


def alert_route(*, alert_type: str, subject: str, body: str) -> int:
    """Queue the alert for every enabled channel routed `alert_type`; return how many.

    With no enabled channel at all, mail ADMINS now (the behaviour without channels).
    """
    channels = list(AlertChannel.objects.filter(enabled=True))
    if not channels:
        mail_admins(subject, body)
        return 1
    now = clock.now()
    messages = [
        AlertMessage(
            channel=channel,
            alert_type=alert_type,
            subject=subject,
            body=body,
            next_attempt_at=now,
            created_at=now,
            dispatched_until=now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE),
        )
        for channel in channels
        if alert_type in channel.alert_types
    ]
    with transaction.atomic():
        created = AlertMessage.objects.bulk_create(messages)
        ids = [m.pk for m in created if m.pk is not None]
        transaction.on_commit(partial(_tasks_queue, ids), robust=True)
    return len(messages)


def _tasks_queue(message_ids: list[int]) -> None:
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    # On the webhook cluster: a Webex API or mail server that hangs holds no refresh worker.
    cluster = webhook_cluster_name()
    broker = get_broker(cluster)
    with transaction.atomic():  # one commit for all tasks with the ORM broker
        for pk in message_ids:
            async_task(SEND_TASK, pk, group="alert", broker=broker, cluster=cluster)


def alert_channel_send(*, channel: AlertChannel, subject: str, body: str) -> None:
    """Deliver one alert through `channel` now; raise AlertChannelError when it fails."""
    if channel.kind == AlertChannel.Kind.WEBEX:
        _webex_post(channel, f"**{subject}**\n\n{body}")
        return
    recipients = channel.email_recipients.split()
    try:
        if recipients:
            send_mail(subject, body, None, recipients)
        else:
            mail_admins(subject, body, fail_silently=False)
    except Exception as exc:  # SMTP errors come in many classes
        raise AlertChannelError(f"Mail failed: {type(exc).__name__}.") from None


def _webex_post(channel: AlertChannel, markdown: str) -> None:
    url = app_settings.WEBEX_API_BASE_URL.rstrip("/") + WEBEX_MESSAGES_PATH
    try:
        response = requests.post(
            url,
            json={"roomId": channel.webex_room_id, "markdown": markdown},
            headers={"Authorization": f"Bearer {channel.webex_bot_token}"},
            timeout=(app_settings.HTTP_CONNECT_TIMEOUT, app_settings.HTTP_TIMEOUT),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise AlertChannelError(f"Webex could not be reached ({type(exc).__name__}).") from None
    if not 200 <= response.status_code < 300:
        raise AlertChannelError(f"Webex answered HTTP {response.status_code} to /v1/messages.")


def alert_message_send(*, message_id: int) -> AlertMessage | None:
    """Send one due alert message and store the outcome; None when not due (or taken)."""
    now = clock.now()
    lease = now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE)
    claimed = AlertMessage.objects.filter(
        pk=message_id, status=Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    message = AlertMessage.objects.select_related("channel").get(pk=message_id)
    try:
        message.channel.send(message.subject, message.body)
    except AlertChannelError as exc:
        logger.warning("alert channel failed channel=%s error=%s", message.channel, exc)
        return _retry_or_give_up(message, error=str(exc))
    message.status, message.next_attempt_at, message.error = Status.SENT, None, ""
    message.save(update_fields=["status", "next_attempt_at", "error"])
    return message


def _retry_or_give_up(message: AlertMessage, *, error: str) -> AlertMessage:
    now = clock.now()
    ceiling = min(
        app_settings.WEBHOOK_RETRY_MAX_DELAY,
        app_settings.WEBHOOK_RETRY_BASE_DELAY * 2 ** max(message.attempts - 1, 0),
    )
    next_at = now + timedelta(seconds=ceiling * (0.5 + random.random() / 2))
    give_up_at = message.created_at + timedelta(hours=app_settings.ALERT_RETRY_HOURS)
    message.error = error[:ERROR_MAX_LENGTH]
    message.status = Status.PENDING if next_at <= give_up_at else Status.FAILED
    message.next_attempt_at = next_at if message.status == Status.PENDING else None
    message.dispatched_until = None
    message.save(update_fields=["status", "next_attempt_at", "dispatched_until", "error"])
    return message


def alert_messages_dispatch_due() -> int:
    """Queue a task for each alert message due for a (re)try; return how many."""
    now = clock.now()
    due = list(
        AlertMessage.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .exclude(dispatched_until__gt=now)
        .values_list("pk", flat=True)[: app_settings.WEBHOOK_SWEEP_MAX]
    )
    if due:
        lease = now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE)
        AlertMessage.objects.filter(pk__in=due).update(dispatched_until=lease)
        _tasks_queue(due)
    return len(due)


def alert_messages_prune() -> int:
    """Delete sent or failed alert messages older than WEBHOOK_DELIVERY_RETENTION_DAYS,
    at most WEBHOOK_PRUNE_BATCH at once; return how many."""
    cutoff = clock.now() - timedelta(days=app_settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    old = AlertMessage.objects.filter(created_at__lt=cutoff).exclude(status=Status.PENDING)
    batch = list(old.values_list("pk", flat=True)[: app_settings.WEBHOOK_PRUNE_BATCH])
    if batch:
        AlertMessage.objects.filter(pk__in=batch).delete()
    return len(batch)
