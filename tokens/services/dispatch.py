"""Queueing refreshes: the per-minute sweep and the bulk refresh; expiry warnings."""

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django_q.brokers import get_broker
from django_q.tasks import async_task

from tokens import alerts, clock
from tokens.conf import app_settings
from tokens.models import Org, Token, TokenEvent
from tokens.selectors import integration_budgets, refresh_tokens_expiring, tokens_due

logger = logging.getLogger(__name__)

REFRESH_TASK = "tokens.tasks.refresh_org"


def refresh_dispatch_due() -> int:
    """Queue a refresh task for each due org, within each integration's rate; return the count.

    The orgs are marked dispatched first, so the next sweep does not queue them again
    while their task waits; a task lost with the queue is re-dispatched once the mark
    runs out (DISPATCH_LEASE). Extra or late tasks are harmless: the refresh service
    re-checks that the org is still due.
    """
    now = clock.now()
    due = tokens_due(now=now, limit=app_settings.SWEEP_MAX_DISPATCH)
    if not due:
        return 0
    budgets = integration_budgets(now=now, integration_ids={i for _, i in due})
    taken: Counter[int] = Counter()
    chosen = []
    for org_id, integration_id in due:
        if taken[integration_id] < budgets.get(integration_id, 0):
            taken[integration_id] += 1
            chosen.append(org_id)
    dispatched = refresh_dispatch(org_ids=chosen, trigger=TokenEvent.Trigger.SCHEDULE)
    if len(chosen) < len(due):
        logger.info("sweep held back %s due orgs (rate limits)", len(due) - len(chosen))
    logger.info("sweep dispatched %s refreshes", len(dispatched))
    return len(dispatched)


def refresh_dispatch(
    *,
    org_ids: Iterable[int],
    trigger: TokenEvent.Trigger,
    actor: AbstractBaseUser | None = None,
    force: bool = False,
) -> list[int]:
    """Mark the connected orgs among `org_ids` dispatched and queue a refresh task for each.

    Returns the ids of the orgs queued; the others (not connected) are skipped. The sweep
    and the admin's bulk refresh both queue through here.
    """
    org_ids = list(org_ids)
    connected = set(
        Token.objects.filter(org_id__in=org_ids, org__status=Org.Status.CONNECTED).values_list(
            "org_id", flat=True
        )
    )
    queued = [org_id for org_id in org_ids if org_id in connected]  # in the caller's order
    if not queued:
        return []
    lease_end = clock.now() + timedelta(seconds=app_settings.DISPATCH_LEASE)
    Token.objects.filter(org_id__in=queued).update(dispatched_until=lease_end)
    # The mark is committed before any task is queued, so no row stays locked while
    # tasks are pushed. One transaction around the pushes: with the ORM broker every
    # task is a row, and one commit for all is far cheaper than one each. One broker
    # for all of them: async_task would otherwise open a new Redis connection per task.
    actor_id = actor.pk if actor is not None else None
    broker = get_broker()
    with transaction.atomic():
        for org_id in queued:
            async_task(
                REFRESH_TASK, org_id, trigger, actor_id, force, group="refresh", broker=broker
            )
    return queued


def refresh_expiry_alerts_send() -> int:
    """Mail once per refresh token that expires within the warning window; return how many."""
    expiring = refresh_tokens_expiring(now=clock.now())
    for token in expiring:
        with transaction.atomic():
            Token.objects.filter(pk=token.pk).update(
                expiry_alerted_fingerprint=token.refresh_fingerprint
            )
            alerts.alert_refresh_token_expiring(token.org, expires_at=token.refresh_expires_at)
    return len(expiring)
