"""Consumer webhooks: signed, delivered off the refresh path, retried, SSRF-guarded."""

import json
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import TestCase
from django_q.conf import Conf

from tests.webhook_receiver import WebhookReceiver
from tokens import services, tasks
from tokens.models import ApiClient, Org, Token, Webhook, WebhookDelivery
from tokens.services import webhooks

pytestmark = pytest.mark.django_db

LOOPBACK = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32"}


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run queued tasks at once, in this process (django-q2's sync mode)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1, with loopback allowed for webhooks."""
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, **LOOPBACK}
    fake = WebhookReceiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def hooked(receiver: WebhookReceiver) -> tuple[Webhook, str, str]:
    """An all-orgs API client with a webhook to the receiver; its key and secret."""
    client, key = services.api_client_create(name="flows", all_orgs=True)
    webhook, secret = webhooks.webhook_set(client=client, url=receiver.url)
    receiver.secrets = [secret]
    return webhook, key, secret


def make_due(frozen_clock, org: Org) -> None:
    frozen_clock.current = Token.objects.get(org=org).next_refresh_at + timedelta(seconds=1)


def refresh(org: Org):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.token_refresh(org_id=org.pk, trigger="schedule")


def test_refresh_delivers_a_signed_token_refreshed_event_without_any_secret(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    _webhook, key, secret = hooked
    make_due(frozen_clock, connected_org)
    assert refresh(connected_org).outcome == "refreshed"
    [request] = receiver.received
    assert request.signature_ok
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    token = Token.objects.get(org=connected_org)
    assert body["type"] == "token.refreshed"
    assert body["data"] == {
        "org": "acme",
        "provider_org_id": connected_org.provider_org_id,
        "expires_at": token.access_expires_at.isoformat(),
        "token_version": 2,
    }
    assert request.headers["X-TokenConsole-Delivery"] == body["id"]
    seen = request.body.decode() + json.dumps(request.headers)
    for secret_value in (token.access_token, token.refresh_token, key, secret, "s3cr3t-client"):
        assert secret_value not in seen
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("delivered", 200, 1)


def test_needs_reconnect_reconnect_and_disconnect_are_delivered(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    make_due(frozen_clock, connected_org)
    provider.fail_next("invalid_grant")
    refresh(connected_org)
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.org_disconnect(org_id=connected_org.pk)
    bodies = [json.loads(r.body) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["org.needs_reconnect", "org.disconnected"]
    assert bodies[0]["data"]["reason"] == "invalid_grant"
    assert all(r.signature_ok for r in receiver.received)


def test_a_client_receives_events_only_for_orgs_in_its_scope(
    frozen_clock, connected_org, integration, provider, receiver, sync_tasks
):
    other = Org.objects.create(name="Other", slug="other", integration=integration)
    client, _ = services.api_client_create(name="narrow", orgs=[other])
    webhooks.webhook_set(client=client, url=receiver.url)
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    assert receiver.received == []
    assert not WebhookDelivery.objects.exists()


def test_a_503_is_retried_with_backoff_until_delivered(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    receiver.answers.extend([(503, {}), (503, {})])
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("pending", 503, 1)
    first_wait = delivery.next_attempt_at - frozen_clock.current
    assert timedelta(seconds=15) <= first_wait <= timedelta(seconds=30)
    assert tasks.sweep_webhooks().startswith("deliveries 0")  # not due yet
    frozen_clock.current = delivery.next_attempt_at
    tasks.sweep_webhooks()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert delivery.next_attempt_at - frozen_clock.current >= timedelta(seconds=30)
    frozen_clock.current = delivery.next_attempt_at
    tasks.sweep_webhooks()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
    assert len(receiver.received) == 3
    assert len({r.body for r in receiver.received}) == 1  # the same event each time
    assert all(r.signature_ok for r in receiver.received)


def test_a_429_waits_for_its_retry_after(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    receiver.answers.append((429, {"Retry-After": "7200"}))
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at - frozen_clock.current >= timedelta(hours=2)


@pytest.mark.parametrize(
    ("retry_after", "shortest", "longest"),
    [
        ("100000000000000", timedelta(hours=24), timedelta(hours=24)),  # the retry window
        ("9" * 400, timedelta(hours=24), timedelta(hours=24)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", timedelta(hours=24), timedelta(hours=24)),
        ("inf", timedelta(seconds=15), timedelta(seconds=30)),  # ignored: plain backoff
        ("1e400", timedelta(seconds=15), timedelta(seconds=30)),
        ("nan", timedelta(seconds=15), timedelta(seconds=30)),
        ("-5", timedelta(seconds=15), timedelta(seconds=30)),
    ],
)
def test_a_retry_after_is_read_strictly_and_capped_at_the_retry_window(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks,
    retry_after, shortest, longest,
):  # fmt: skip
    receiver.answers.append((429, {"Retry-After": retry_after}))
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("pending", 429, 1)
    assert shortest <= delivery.next_attempt_at - frozen_clock.current <= longest


def test_a_retry_after_given_as_an_http_date_is_honoured(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    make_due(frozen_clock, connected_org)
    when = frozen_clock.current + timedelta(hours=2)
    receiver.answers.append((503, {"Retry-After": format_datetime(when, usegmt=True)}))
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at == when.replace(microsecond=0)


def test_a_400_is_not_retried(frozen_clock, connected_org, provider, receiver, hooked, sync_tasks):
    receiver.answers.append((400, {}))
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.next_attempt_at) == (
        "failed",
        400,
        None,
    )
    frozen_clock.advance(hours=2)
    tasks.sweep_webhooks()
    assert len(receiver.received) == 1


def test_retries_stop_after_24_hours(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    receiver.answers.extend([(503, {})] * 100)
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    while delivery.status == "pending":
        frozen_clock.current = delivery.next_attempt_at
        tasks.sweep_webhooks()
        delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_attempt_at - delivery.created_at <= timedelta(hours=24)
    assert 20 < delivery.attempts <= 60  # backoff capped at an hour, with jitter


def test_a_webhook_failing_for_three_days_is_disabled_and_admins_alerted_once(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    webhook, _, _ = hooked
    receiver.answers.extend([(500, {})] * 500)
    for _ in range(4):  # an event a day, each retried until its day is over
        make_due(frozen_clock, connected_org)
        refresh(connected_org)
        for delivery in WebhookDelivery.objects.filter(status="pending"):
            while delivery.status == "pending":
                frozen_clock.current = max(frozen_clock.current, delivery.next_attempt_at)
                with TestCase.captureOnCommitCallbacks(execute=True):
                    tasks.sweep_webhooks()
                delivery.refresh_from_db()
    webhook.refresh_from_db()
    assert not webhook.enabled
    alerts = [m for m in mail.outbox if "Webhook of flows disabled" in m.subject]
    assert len(alerts) == 1
    received = len(receiver.received)
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    assert len(receiver.received) == received  # a disabled webhook gets nothing


def test_a_receiver_slower_than_the_total_deadline_is_cut_off_and_retried(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks, settings
):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "WEBHOOK_TOTAL_TIMEOUT": 0.3}
    receiver.delay = 2.0
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.response_code is None
    assert "deadline" in delivery.error
    assert delivery.duration_ms < 1500


def test_rotation_signs_with_both_secrets_for_24_hours(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    webhook, _, old = hooked
    new = webhooks.webhook_secret_rotate(webhook=webhook)
    assert new != old
    receiver.secrets = [new]
    webhooks.webhook_ping(webhook=webhook)
    receiver.secrets = [old]
    webhooks.webhook_ping(webhook=webhook)
    assert [r.signature_ok for r in receiver.received] == [True, True]
    assert receiver.received[0].headers["X-TokenConsole-Signature"].count("v1=") == 2
    frozen_clock.advance(hours=24, seconds=1)
    webhooks.webhook_ping(webhook=webhook)
    assert receiver.received[2].headers["X-TokenConsole-Signature"].count("v1=") == 1
    assert not receiver.received[2].signature_ok  # the old secret no longer signs


def test_send_test_webhook_reports_the_receivers_answer(receiver, hooked, capsys):
    receiver.answers.append((202, {}))
    call_command("send_test_webhook", "flows")
    out = capsys.readouterr().out
    assert "HTTP 202" in out
    assert json.loads(receiver.received[0].body)["type"] == "ping"


def test_send_test_webhook_refuses_an_unknown_client_or_one_without_webhook(db):
    ApiClient.objects.create(name="bare", key_prefix="abcd1234", key_hash="x")
    with pytest.raises(Exception, match="No API client named 'nope'"):
        call_command("send_test_webhook", "nope")
    with pytest.raises(Exception, match="has no webhook"):
        call_command("send_test_webhook", "bare")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.100.100.200/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[fe80::1]/hook",
        "https://[ff02::1]/hook",
        "https://localhost/hook",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
        "https://user:pw@8.8.8.8/hook",
    ],
)
def test_the_ssrf_guard_refuses_non_public_or_plain_http_urls_at_save(db, url):
    client, _ = services.api_client_create(name="c")
    with pytest.raises(ValidationError):
        webhooks.webhook_set(client=client, url=url)
    assert not Webhook.objects.exists()


def test_the_ssrf_guard_accepts_https_to_a_public_address(db):
    client, _ = services.api_client_create(name="c")
    webhook, secret = webhooks.webhook_set(client=client, url="https://8.8.8.8/hook")
    assert webhook.pk and secret.startswith("whsec_")


def test_the_ssrf_guard_checks_again_at_delivery(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks, settings
):
    settings.TOKEN_CONSOLE = {k: v for k, v in settings.TOKEN_CONSOLE.items() if k not in LOOPBACK}
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and "not a public address" in delivery.error
    assert receiver.received == []


def test_redelivery_sends_the_same_event_again(
    frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    receiver.answers.append((400, {}))
    make_due(frozen_clock, connected_org)
    refresh(connected_org)
    delivery = WebhookDelivery.objects.get()
    with TestCase.captureOnCommitCallbacks(execute=True):
        webhooks.webhook_redeliver(delivery=delivery)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert receiver.received[0].body == receiver.received[1].body


def test_old_deliveries_are_pruned_in_batches(frozen_clock, hooked, settings, receiver):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "WEBHOOK_PRUNE_BATCH": 2}
    webhook, _, _ = hooked
    for n in range(3):
        WebhookDelivery.objects.create(
            webhook=webhook, event_id=f"old-{n}", event="ping", payload="{}", status="delivered",
            created_at=frozen_clock.current - timedelta(days=401),
        )  # fmt: skip
    WebhookDelivery.objects.create(webhook=webhook, event_id="new", event="ping", payload="{}")
    assert webhooks.webhook_deliveries_prune() == 2
    assert webhooks.webhook_deliveries_prune() == 1
    assert list(WebhookDelivery.objects.values_list("event_id", flat=True)) == ["new"]


def test_push_admin_pages_load_and_redeliver_queues_again(
    admin_client, frozen_clock, connected_org, provider, receiver, hooked, sync_tasks
):
    from django.urls import reverse

    webhook, _, secret = hooked
    receiver.answers.append((400, {}))
    webhooks.webhook_ping(webhook=webhook)
    delivery = WebhookDelivery.objects.get()
    for name in ("webhook", "webhookdelivery", "alertchannel", "alertmessage"):
        page = admin_client.get(reverse(f"admin:tokens_{name}_changelist"))
        assert page.status_code == 200
        assert secret not in page.content.decode()
    page = admin_client.get(reverse("admin:tokens_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and secret not in page.content.decode()
    with TestCase.captureOnCommitCallbacks(execute=True):
        admin_client.post(
            reverse("admin:tokens_webhookdelivery_changelist"),
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and len(receiver.received) == 2
    rotated = admin_client.post(
        reverse("admin:tokens_webhook_changelist"),
        {"action": "rotate_secret", "_selected_action": [webhook.pk]},
    )
    webhook.refresh_from_db()
    assert webhook.signing_secret in rotated.content.decode()
    assert "no-store" in rotated["Cache-Control"]


def test_a_malformed_private_network_setting_fails_the_system_check(settings):
    from django.core import checks

    settings.TOKEN_CONSOLE = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "10.0.0.0/8, intranet"}
    errors = [m for m in checks.run_checks() if m.id == "tokens.E011"]
    assert len(errors) == 1
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'intranet' is not a network" in errors[0].msg
    settings.TOKEN_CONSOLE = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "10.0.0.0/8, 127.0.0.1"}
    assert not [m for m in checks.run_checks() if m.id == "tokens.E011"]


def test_adding_a_webhook_in_the_admin_shows_its_signing_secret_once(
    admin_client, receiver, frozen_clock
):
    import re

    from django.urls import reverse

    client, _ = services.api_client_create(name="flows", all_orgs=True)
    added = admin_client.post(
        reverse("admin:tokens_webhook_add"),
        {"client": client.pk, "url": receiver.url, "enabled": "on"},
    )
    assert added.status_code == 200, added.content.decode()[:2000]
    assert "no-store" in added["Cache-Control"]
    webhook = Webhook.objects.get(client=client)
    shown = re.findall(r"whsec_[A-Za-z0-9_-]+", added.content.decode())
    assert shown == [webhook.signing_secret]
    for url in (
        reverse("admin:tokens_webhook_change", args=[webhook.pk]),
        reverse("admin:tokens_webhook_changelist"),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert webhook.signing_secret not in page.content.decode()
        assert "whsec_" not in page.content.decode()
    receiver.secrets = shown
    assert webhooks.webhook_ping(webhook=webhook).status == "delivered"
    assert receiver.received[0].signature_ok  # the secret shown is the one that signs
