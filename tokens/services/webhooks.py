"""Consumer webhooks: signed events about orgs, delivered off the refresh path.

A service that changes an org calls `webhook_event_emit`; after its transaction commits,
one WebhookDelivery row per webhook in scope is written and a django-q2 task is queued
for each. The rows are the truth: an attempt claims its row with a conditional update,
sends with no transaction open, and stores the outcome with the next attempt time; the
per-minute webhook sweep queues what is due again (retries, tasks lost with the queue)
and prunes old rows. Payloads carry org slugs, ids, expiries and versions, never a token.
"""

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django_q.brokers import get_broker
from django_q.tasks import async_task

from tokens import alerts, clock, outbound
from tokens.conf import app_settings, webhook_cluster_name
from tokens.exceptions import UnsafeURL
from tokens.models import ApiClient, Org, Token, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

DELIVER_TASK = "tokens.tasks.deliver_webhook"
SIGNATURE_HEADER = "X-TokenConsole-Signature"
SECRET_PREFIX = "whsec_"

TOKEN_REFRESHED = "token.refreshed"
ORG_NEEDS_RECONNECT = "org.needs_reconnect"
ORG_RECONNECTED = "org.reconnected"
ORG_DISCONNECTED = "org.disconnected"
PING = "ping"
# What a delivery row keeps of an answer and an error (their columns' length).
ANSWER_MAX_LENGTH = WebhookDelivery._meta.get_field("answer").max_length
ERROR_MAX_LENGTH = WebhookDelivery._meta.get_field("error").max_length

Status = WebhookDelivery.Status


def signing_secret_generate() -> str:
    """A new random signing secret (shown once, stored encrypted)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_header(secrets_: list[str], *, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, one v1 per secret."""
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    for secret in secrets_:
        parts.append("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


def webhook_signing_secrets(webhook: Webhook, *, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous during the overlap."""
    current = [webhook.signing_secret]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_signing_secret and expires is not None and now < expires:
        return [*current, webhook.previous_signing_secret]
    return current


@transaction.atomic
def webhook_set(*, client: ApiClient, url: str) -> tuple[Webhook, str | None]:
    """Create or change a client's webhook; return it and its new secret (None when kept).

    Raises ValidationError for a URL the SSRF guard refuses.
    """
    webhook = Webhook.objects.filter(client=client).first()
    secret = None
    if webhook is None:
        secret = signing_secret_generate()
        webhook = Webhook(client=client, signing_secret=secret)
    webhook.url = url
    webhook.full_clean(exclude=["client"])
    webhook.save()
    return webhook, secret


def webhook_secret_rotate(*, webhook: Webhook) -> str:
    """Give the webhook a new secret; the old one still signs for WEBHOOK_SECRET_OVERLAP_HOURS."""
    secret = signing_secret_generate()
    webhook.previous_signing_secret = webhook.signing_secret
    webhook.previous_secret_expires_at = clock.now() + timedelta(
        hours=app_settings.WEBHOOK_SECRET_OVERLAP_HOURS
    )
    webhook.signing_secret = secret
    webhook.save()
    return secret


def webhook_event_emit(*, event: str, org: Org, data: dict[str, Any] | None = None) -> None:
    """Deliver `event` about `org` to the webhooks in scope, after the transaction commits."""
    payload = {"org": org.slug, "provider_org_id": org.provider_org_id, **(data or {})}
    transaction.on_commit(partial(_deliveries_queue_safely, event, org.pk, payload), robust=True)


def webhook_token_event_emit(*, event: str, org: Org, token: Token) -> None:
    """Emit an event that carries the token's expiry and version (never the token)."""
    data = {"expires_at": token.access_expires_at.isoformat(), "token_version": token.version}
    webhook_event_emit(event=event, org=org, data=data)


def _deliveries_queue_safely(event: str, org_id: int, data: dict[str, Any]) -> None:
    # Runs after the refresh committed: nothing here may fail or slow the refresh much.
    try:
        webhooks = Webhook.objects.filter(enabled=True, client__revoked_at__isnull=True).filter(
            Q(client__all_orgs=True) | Q(client__orgs=org_id)
        )
        deliveries = [_delivery_new(w, event, data) for w in webhooks.distinct()]
        if deliveries:
            created = WebhookDelivery.objects.bulk_create(deliveries)
            ids = [d.pk for d in created]
            if None in ids:  # a database that returns no ids from a bulk insert
                rows = WebhookDelivery.objects.filter(event_id__in=[d.event_id for d in created])
                ids = list(rows.values_list("pk", flat=True))
            _tasks_queue(ids)
    except Exception:
        logger.exception("webhook deliveries not queued event=%s org_id=%s", event, org_id)


def _delivery_new(webhook: Webhook, event: str, data: dict[str, Any]) -> WebhookDelivery:
    now = clock.now()
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "type": event, "created_at": now.isoformat(), "data": data}
    return WebhookDelivery(
        webhook=webhook,
        event_id=event_id,
        event=event,
        org_slug=data.get("org", ""),
        payload=json.dumps(body, separators=(",", ":")),
        next_attempt_at=now,
        retry_until=now + timedelta(hours=app_settings.WEBHOOK_RETRY_HOURS),
        dispatched_until=now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE),
        created_at=now,
    )


def _tasks_queue(delivery_ids: list[int]) -> None:
    cluster = webhook_cluster_name()  # never the main cluster's refresh workers
    broker = get_broker(cluster)
    with transaction.atomic():  # one commit for all tasks with the ORM broker
        for pk in delivery_ids:
            async_task(DELIVER_TASK, pk, group="webhook", broker=broker, cluster=cluster)


def webhook_ping(*, webhook: Webhook) -> WebhookDelivery:
    """Deliver a `ping` event now and return its delivery row with the receiver's answer."""
    delivery = _delivery_new(webhook, PING, {"client": webhook.client.name})
    delivery.retry_until = delivery.created_at  # a ping is not retried
    delivery.save()
    return webhook_delivery_attempt(delivery_id=delivery.pk) or delivery


def webhook_redeliver(*, delivery: WebhookDelivery) -> None:
    """Send a delivery again (same event id and body), with a fresh retry window."""
    now = clock.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=Status.PENDING,
        next_attempt_at=now,
        retry_until=now + timedelta(hours=app_settings.WEBHOOK_RETRY_HOURS),
        dispatched_until=now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE),
    )
    transaction.on_commit(partial(_tasks_queue, [delivery.pk]), robust=True)


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send one due delivery and store the outcome; None when it is not due (or taken)."""
    now = clock.now()
    lease = now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE)
    # The claim: a conditional update, so two tasks for one row send it once.
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook__client").get(pk=delivery_id)
    webhook = delivery.webhook
    if not webhook.enabled or webhook.client.is_revoked:
        return _finish(delivery, Status.FAILED, error="The webhook is disabled.")
    started = time.monotonic()
    body = delivery.payload.encode()
    headers = _headers(delivery, webhook, body, now=now)
    try:
        answer = outbound.post_json(webhook.url, body, headers)
    except UnsafeURL as exc:
        return _finish(delivery, Status.FAILED, error=str(exc), started=started)
    except OSError as exc:
        return _failed(delivery, error=str(exc) or "network error", started=started)
    return _answered(delivery, answer, started=started)


def _headers(delivery: WebhookDelivery, webhook: Webhook, body: bytes, *, now: datetime) -> dict:
    timestamp = int(now.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": "TokenConsole-Webhooks/1",
        "X-TokenConsole-Event": delivery.event,
        "X-TokenConsole-Delivery": delivery.event_id,
        SIGNATURE_HEADER: signature_header(
            webhook_signing_secrets(webhook, now=now), timestamp=timestamp, body=body
        ),
    }


def _answered(delivery: WebhookDelivery, answer: outbound.Answer, *, started: float):
    delivery.response_code = answer.status
    delivery.answer = " ".join(answer.body.split())[:ANSWER_MAX_LENGTH]
    if 200 <= answer.status < 300:
        Webhook.objects.filter(pk=delivery.webhook_id).update(failing_since=None)
        return _finish(delivery, Status.DELIVERED, started=started)
    error = f"The receiver answered HTTP {answer.status}."
    if answer.status >= 500 or answer.status == 429:
        return _failed(delivery, error=error, started=started, retry_after=answer.retry_after)
    return _finish(delivery, Status.FAILED, error=error + " Not retried.", started=started)


def _failed(
    delivery: WebhookDelivery, *, error: str, started: float, retry_after: float | None = None
) -> WebhookDelivery:
    """A transient failure: retry with backoff within the window; disable a dead webhook."""
    now = clock.now()
    ceiling = min(
        app_settings.WEBHOOK_RETRY_MAX_DELAY,
        app_settings.WEBHOOK_RETRY_BASE_DELAY * 2 ** max(delivery.attempts - 1, 0),
    )
    jittered = ceiling * (0.5 + random.random() / 2)  # upper-half jitter, as planning.py
    delay = timedelta(seconds=max(jittered, retry_after or 0))
    _webhook_failure_note(delivery.webhook, now=now)
    if delivery.retry_until is not None and now + delay <= delivery.retry_until:
        return _finish(delivery, Status.PENDING, error=error, started=started, next_at=now + delay)
    return _finish(delivery, Status.FAILED, error=error + " Retries exhausted.", started=started)


def _webhook_failure_note(webhook: Webhook, *, now: datetime) -> None:
    """Remember when failures began; after WEBHOOK_DISABLE_AFTER_DAYS disable it, alert once."""
    Webhook.objects.filter(pk=webhook.pk, failing_since__isnull=True).update(failing_since=now)
    limit = now - timedelta(days=app_settings.WEBHOOK_DISABLE_AFTER_DAYS)
    reason = f"Deliveries failed for {app_settings.WEBHOOK_DISABLE_AFTER_DAYS} days."
    with transaction.atomic():
        disabled = Webhook.objects.filter(
            pk=webhook.pk, enabled=True, failing_since__lte=limit
        ).update(enabled=False, disabled_reason=reason)
        if disabled:
            alerts.alert_webhook_disabled(webhook.client, url=webhook.url, reason=reason)


def _finish(
    delivery: WebhookDelivery,
    status: str,
    *,
    error: str = "",
    started: float | None = None,
    next_at: datetime | None = None,
) -> WebhookDelivery:
    delivery.status = status
    delivery.error = error[:ERROR_MAX_LENGTH]
    delivery.next_attempt_at = next_at
    delivery.dispatched_until = None
    if started is not None:
        delivery.duration_ms = int((time.monotonic() - started) * 1000)
    delivery.save(
        update_fields=[
            "status", "error", "next_attempt_at", "dispatched_until", "duration_ms",
            "response_code", "answer",
        ]
    )  # fmt: skip
    logger.info(
        "webhook delivery id=%s event=%s status=%s code=%s attempts=%s",
        delivery.event_id, delivery.event, status, delivery.response_code, delivery.attempts,
    )  # fmt: skip
    return delivery


def webhook_deliveries_dispatch_due() -> int:
    """Queue a task for each delivery that is due and not already queued; return how many."""
    now = clock.now()
    due = list(
        WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .exclude(dispatched_until__gt=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: app_settings.WEBHOOK_SWEEP_MAX]
    )
    if due:
        lease = now + timedelta(seconds=app_settings.WEBHOOK_DISPATCH_LEASE)
        WebhookDelivery.objects.filter(pk__in=due).update(dispatched_until=lease)
        _tasks_queue(due)
    return len(due)


def webhook_deliveries_prune() -> int:
    """Delete delivery rows older than WEBHOOK_DELIVERY_RETENTION_DAYS, in batches."""
    cutoff = clock.now() - timedelta(days=app_settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    old = WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(status=Status.PENDING)
    batch = list(old.values_list("pk", flat=True)[: app_settings.WEBHOOK_PRUNE_BATCH])
    if batch:
        WebhookDelivery.objects.filter(pk__in=batch).delete()
    return len(batch)
