"""Admin alert channels: Webex spaces and e-mail, routed per alert type, retried."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import TestCase
from django_q.conf import Conf

from tests.brokers import queued_tasks
from tokens import services, tasks
from tokens.models import AlertChannel, AlertMessage, AlertType, Token
from tokens.services import alert_channels

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run queued tasks at once, in this process (django-q2's sync mode)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def webex_api(settings, provider):
    """The Webex API base URL pointed at the fake provider."""
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "WEBEX_API_BASE_URL": provider.base_url}
    return provider


def webex_channel(provider, types=None) -> AlertChannel:
    return AlertChannel.objects.create(
        name="ops space", kind="webex", webex_bot_token=provider.bot_token,
        webex_room_id="room-1", alert_types=types or list(AlertType.values),
    )  # fmt: skip


def fail_refresh(frozen_clock, org, provider) -> None:
    frozen_clock.current = Token.objects.get(org=org).next_refresh_at + timedelta(seconds=1)
    provider.fail_next("invalid_grant")
    with TestCase.captureOnCommitCallbacks(execute=True):
        result = services.token_refresh(org_id=org.pk, trigger="schedule")
    assert result.outcome == "needs_reconnect"


def test_invalid_grant_posts_one_webex_message_and_one_mail(
    frozen_clock, connected_org, webex_api, sync_tasks
):
    webex_channel(webex_api)
    AlertChannel.objects.create(name="ops mail", kind="email", email_recipients="a@example.com")
    fail_refresh(frozen_clock, connected_org, webex_api)
    frozen_clock.advance(hours=1)
    tasks.sweep_webhooks()  # nothing left to send again
    [message] = webex_api.messages
    assert message["authorization"] == f"Bearer {webex_api.bot_token}"
    assert message["json"]["roomId"] == "room-1"
    assert message["json"]["markdown"].startswith("**Acme Contact Center needs to be reconnected**")
    assert "invalid_grant" in message["json"]["markdown"]
    [sent] = mail.outbox
    assert sent.to == ["a@example.com"] and "needs to be reconnected" in sent.subject
    assert set(AlertMessage.objects.values_list("status", flat=True)) == {"sent"}


def test_a_channel_gets_only_the_alert_types_routed_to_it(
    frozen_clock, connected_org, webex_api, sync_tasks
):
    webex_channel(webex_api, types=[AlertType.RECOVERED])
    fail_refresh(frozen_clock, connected_org, webex_api)
    assert webex_api.messages == []
    assert mail.outbox == []  # channels are configured: no fallback mail to ADMINS


def test_a_failing_webex_channel_is_retried_and_never_fails_the_refresh(
    frozen_clock, connected_org, webex_api, sync_tasks
):
    webex_channel(webex_api)
    webex_api.messages_status = 503
    fail_refresh(frozen_clock, connected_org, webex_api)  # the refresh still completes
    message = AlertMessage.objects.get()
    assert message.status == "pending" and "HTTP 503" in message.error
    assert webex_api.bot_token not in message.error
    webex_api.messages_status = None
    frozen_clock.current = message.next_attempt_at
    tasks.sweep_webhooks()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert [m["status"] for m in webex_api.messages] == [503, 200]


def test_without_channels_alerts_are_mailed_to_admins(frozen_clock, connected_org, provider):
    fail_refresh(frozen_clock, connected_org, provider)
    [sent] = mail.outbox
    assert sent.to == ["ops@example.com"]
    assert not AlertMessage.objects.exists()


def test_alert_messages_are_queued_for_the_webhook_cluster_not_the_refresh_workers(
    frozen_clock, connected_org, webex_api
):
    """A Webex API or mail server that hangs must hold no refresh worker."""
    webex_channel(webex_api)
    fail_refresh(frozen_clock, connected_org, webex_api)
    message = AlertMessage.objects.get()
    assert [t["func"] for t in queued_tasks()] == []
    [queued] = queued_tasks("webhooks")
    assert (queued["func"], queued["args"], queued["cluster"]) == (
        "tokens.tasks.send_alert", (message.pk,), "webhooks",
    )  # fmt: skip


def test_old_alert_messages_are_pruned_in_batches_but_pending_ones_kept(
    frozen_clock, settings, webex_api
):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "WEBHOOK_PRUNE_BATCH": 2}
    channel = webex_channel(webex_api)
    old = frozen_clock.current - timedelta(days=401)
    for status in ("sent", "failed", "sent", "pending"):
        AlertMessage.objects.create(
            channel=channel, alert_type=AlertType.RECOVERED, subject=status, body="",
            status=status, created_at=old,
        )  # fmt: skip
    AlertMessage.objects.create(
        channel=channel, alert_type=AlertType.RECOVERED, subject="new", body="", status="sent"
    )
    assert alert_channels.alert_messages_prune() == 2
    assert tasks.sweep_webhooks().endswith("pruned alerts 1")
    assert alert_channels.alert_messages_prune() == 0
    assert sorted(AlertMessage.objects.values_list("subject", flat=True)) == ["new", "pending"]
