"""The per-minute sweep, the Refresh-now button, the bulk action and the commands."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule

from tests.brokers import purge_queue, queued_tasks
from tests.conftest import connect_org, make_staff, store_under_lost_key
from tokens import services, tasks
from tokens.models import Integration, Org, Token, TokenEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def orgs(frozen_clock, integration, provider) -> list[Org]:
    """Five connected orgs on one integration."""
    return [
        connect_org(
            Org.objects.create(name=f"Org {n}", slug=f"org-{n}", integration=integration),
            provider,
        )
        for n in range(5)
    ]


def all_due(clock) -> None:
    latest = max(Token.objects.values_list("next_refresh_at", flat=True))
    clock.current = latest + timedelta(seconds=1)


def queued_org_ids() -> list[int]:
    return sorted(task["args"][0] for task in queued_tasks())


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run queued tasks at once, in this process (django-q2's sync mode)."""
    monkeypatch.setattr(Conf, "SYNC", True)


def test_sweep_queues_each_due_org_once_until_the_dispatch_mark_runs_out(frozen_clock, orgs):
    assert services.refresh_dispatch_due() == 0  # nothing due yet
    all_due(frozen_clock)
    assert services.refresh_dispatch_due() == 5
    assert queued_org_ids() == sorted(o.pk for o in orgs)
    assert services.refresh_dispatch_due() == 0  # queued already: not again
    # The queue lost its tasks (a broker restart): the database still knows they are due.
    purge_queue()
    frozen_clock.advance(seconds=301)
    assert services.refresh_dispatch_due() == 5


def test_sweep_pushes_all_its_tasks_through_one_broker(frozen_clock, orgs, monkeypatch):
    # async_task opens a broker of its own (with Redis, a new connection) unless given one.
    opened = []

    def counting_get_broker(*args, **kwargs):
        opened.append(args)
        return get_broker(*args, **kwargs)

    monkeypatch.setattr("tokens.services.dispatch.get_broker", counting_get_broker)
    monkeypatch.setattr("django_q.tasks.get_broker", counting_get_broker)
    all_due(frozen_clock)
    assert services.refresh_dispatch_due() == 5
    assert len(opened) == 1
    assert queued_org_ids() == sorted(o.pk for o in orgs)


def test_sweep_skips_orgs_that_are_not_connected(frozen_clock, orgs):
    Org.objects.filter(pk=orgs[0].pk).update(status=Org.Status.NEEDS_RECONNECT)
    Org.objects.filter(pk=orgs[1].pk).update(status=Org.Status.DISABLED)
    all_due(frozen_clock)
    assert services.refresh_dispatch_due() == 3


def test_sweep_respects_the_integration_rate_and_throttle(frozen_clock, orgs, integration):
    all_due(frozen_clock)
    Integration.objects.filter(pk=integration.pk).update(refresh_rate_per_minute=2)
    assert services.refresh_dispatch_due() == 2
    Integration.objects.filter(pk=integration.pk).update(
        throttled_until=frozen_clock.current + timedelta(minutes=5)
    )
    assert services.refresh_dispatch_due() == 0
    frozen_clock.advance(minutes=6)
    assert services.refresh_dispatch_due() == 2


def test_sweep_task_refreshes_due_orgs_end_to_end(frozen_clock, orgs, provider, sync_tasks):
    all_due(frozen_clock)
    provider.reset_records()
    assert tasks.sweep_due_orgs().startswith("dispatched 5")
    assert provider.refresh_call_count() == 5
    assert set(Token.objects.values_list("version", flat=True)) == {2}
    assert TokenEvent.objects.filter(kind="refreshed", trigger="schedule").count() == 5
    assert Token.objects.filter(dispatched_until__isnull=False).count() == 0


def test_refresh_token_expiry_warning_is_mailed_once_per_token(frozen_clock, orgs, provider):
    token = Token.objects.get(org=orgs[0])
    frozen_clock.current = token.refresh_expires_at - timedelta(days=10)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert services.refresh_expiry_alerts_send() == 5
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert services.refresh_expiry_alerts_send() == 0
    assert len(mail.outbox) == 5
    assert "refresh token expires" in mail.outbox[0].subject


def test_refresh_now_button_refreshes_at_once_as_the_user(client, connected_org, provider):
    user = make_staff("op", "tokens.view_org", "tokens.refresh_org")
    client.force_login(user)
    page = client.get(reverse("admin:tokens_org_change", args=[connected_org.pk]))
    url = reverse("admin:tokens_org_refresh", args=[connected_org.pk])
    assert url in page.content.decode()
    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert "Refreshed to version 2" in response.content.decode()
    event = TokenEvent.objects.filter(org=connected_org).first()
    assert (event.kind, event.trigger, event.actor) == ("refreshed", "manual", user)


def test_refresh_now_is_hidden_and_refused_without_permission(client, connected_org, provider):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    url = reverse("admin:tokens_org_refresh", args=[connected_org.pk])
    page = client.get(reverse("admin:tokens_org_change", args=[connected_org.pk]))
    assert url not in page.content.decode()
    provider.reset_records()
    assert client.post(url).status_code == 403
    assert provider.token_calls == []
    assert Token.objects.get(org=connected_org).version == 1


def test_refresh_now_on_a_pending_org_says_why(client, org, provider):
    client.force_login(make_staff("op", "tokens.view_org", "tokens.refresh_org"))
    response = client.post(reverse("admin:tokens_org_refresh", args=[org.pk]), follow=True)
    assert "nothing to refresh" in response.content.decode()
    assert provider.token_calls == []


def test_bulk_action_queues_manual_refreshes(client, frozen_clock, orgs, provider, sync_tasks):
    user = make_staff("op", "tokens.view_org", "tokens.change_org", "tokens.refresh_org")
    client.force_login(user)
    Org.objects.filter(pk=orgs[4].pk).update(status=Org.Status.DISABLED)
    response = client.post(
        reverse("admin:tokens_org_changelist"),
        {"action": "refresh_selected", "_selected_action": [o.pk for o in orgs]},
        follow=True,
    )
    assert "Queued a refresh for 4 org(s). 1 not connected, skipped." in response.content.decode()
    manual = TokenEvent.objects.filter(kind="refreshed", trigger="manual", actor=user)
    assert manual.count() == 4


def test_bulk_action_marks_the_orgs_dispatched_and_queues_through_one_broker(
    client, frozen_clock, orgs, monkeypatch
):
    opened = []

    def counting_get_broker(*args, **kwargs):
        opened.append(args)
        return get_broker(*args, **kwargs)

    monkeypatch.setattr("tokens.services.dispatch.get_broker", counting_get_broker)
    monkeypatch.setattr("django_q.tasks.get_broker", counting_get_broker)
    user = make_staff("op", "tokens.view_org", "tokens.change_org", "tokens.refresh_org")
    client.force_login(user)
    Org.objects.filter(pk=orgs[4].pk).update(status=Org.Status.DISABLED)
    all_due(frozen_clock)
    client.post(
        reverse("admin:tokens_org_changelist"),
        {"action": "refresh_selected", "_selected_action": [o.pk for o in orgs]},
    )
    assert len(opened) == 1
    tasks = sorted(queued_tasks(), key=lambda task: task["args"][0])
    assert [task["args"] for task in tasks] == [
        (o.pk, TokenEvent.Trigger.MANUAL, user.pk, True) for o in orgs[:4]
    ]
    assert all(type(task["args"][1]) is TokenEvent.Trigger for task in tasks)
    marked = Token.objects.filter(dispatched_until__gt=frozen_clock.current)
    assert sorted(marked.values_list("org_id", flat=True)) == [o.pk for o in orgs[:4]]
    # The sweep does not queue them a second time while their tasks wait.
    assert services.refresh_dispatch_due() == 0


def test_refresh_dispatch_queues_only_connected_orgs_with_the_given_trigger(
    frozen_clock, orgs, org
):
    Org.objects.filter(pk=orgs[0].pk).update(status=Org.Status.NEEDS_RECONNECT)
    queued = services.refresh_dispatch(
        org_ids=[orgs[2].pk, orgs[0].pk, org.pk, orgs[1].pk], trigger=TokenEvent.Trigger.COMMAND
    )
    assert queued == [orgs[2].pk, orgs[1].pk]  # in the order given; the pending org skipped
    assert [task["args"] for task in queued_tasks()] == [
        (orgs[2].pk, TokenEvent.Trigger.COMMAND, None, False),
        (orgs[1].pk, TokenEvent.Trigger.COMMAND, None, False),
    ]


def test_a_task_queued_with_a_plain_trigger_string_still_runs(frozen_clock, orgs, provider):
    assert tasks.refresh_org(orgs[0].pk, "manual", None, True) == "org-0: refreshed"
    assert TokenEvent.objects.filter(org=orgs[0], kind="refreshed", trigger="manual").exists()


def test_refresh_tokens_command_reports_each_org_and_fails_on_failure(
    frozen_clock, orgs, provider, capsys
):
    call_command("refresh_tokens", "--org", "org-0", "--org", "org-1", "--force")
    out = capsys.readouterr().out
    assert "org-0: refreshed" in out
    assert "2 of 2 orgs ok, 0 failed." in out
    provider.fail_next("invalid_grant")
    with pytest.raises(CommandError) as excinfo:
        call_command("refresh_tokens", "--org", "org-2", "--force")
    assert excinfo.value.returncode == 1
    assert "org-2: needs_reconnect" in capsys.readouterr().out
    event = TokenEvent.objects.filter(org__slug="org-2").first()
    assert event.trigger == "command"


def test_refresh_tokens_command_due_only_touches_due_orgs(frozen_clock, orgs, provider, capsys):
    provider.reset_records()
    call_command("refresh_tokens", "--due")
    assert "0 of 0 orgs ok" in capsys.readouterr().out
    assert provider.token_calls == []


def test_refresh_tokens_command_rejects_unknown_slugs(orgs, provider):
    provider.reset_records()
    with pytest.raises(CommandError, match="No org with slug: nope"):
        call_command("refresh_tokens", "--org", "org-0", "--org", "nope")
    assert provider.token_calls == []


def test_setup_schedules_is_idempotent(capsys):
    call_command("setup_schedules")
    call_command("setup_schedules")
    schedules = {s.func: (s.schedule_type, s.minutes) for s in Schedule.objects.all()}
    assert schedules == {
        "tokens.tasks.sweep_due_orgs": (Schedule.MINUTES, 1),
        "tokens.tasks.sweep_webhooks": (Schedule.MINUTES, 1),
        "tokens.tasks.prune_token_events": (Schedule.DAILY, None),
    }
    prune = Schedule.objects.get(func="tokens.tasks.prune_token_events")
    assert prune.repeats == -1
    assert "Updated schedule" in capsys.readouterr().out


def test_sweep_refreshes_every_org_but_the_ones_no_key_decrypts(
    frozen_clock, orgs, integration, provider, sync_tasks
):
    lost_token = Token.objects.get(org=orgs[0])
    lost = [store_under_lost_key(lost_token, "refresh_token", "lost-refresh-token")]
    other = Integration.objects.create(
        name="Webex other", provider="webex", client_id=provider.client_id,
        client_secret=provider.client_secret, authorize_url=provider.authorize_url,
        token_url=provider.token_url, userinfo_url=provider.userinfo_url,
    )  # fmt: skip
    behind = connect_org(
        Org.objects.create(name="Behind", slug="behind", integration=other), provider
    )
    lost.append(store_under_lost_key(other, "client_secret", "lost-client-secret"))
    all_due(frozen_clock)
    provider.reset_records()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert tasks.sweep_due_orgs().startswith("dispatched 6")
    assert provider.refresh_call_count() == 4
    for org in orgs[1:]:
        assert Token.objects.get(org=org).version == 2
    for org, field in ((orgs[0], "Token.refresh_token"), (behind, "Integration.client_secret")):
        org.refresh_from_db()
        assert org.status == Org.Status.NEEDS_RECONNECT
        assert org.status_reason.startswith("encryption_key: ")
        assert field in org.status_reason
        event = TokenEvent.objects.filter(org=org).first()
        expected = ("refresh_failed", "failure", "encryption_key")
        assert (event.kind, event.outcome, event.error_code) == expected
        assert Token.objects.get(org=org).next_refresh_at is None
    assert sorted(m.subject.split("] ")[1] for m in mail.outbox) == [
        "Behind needs to be reconnected (encryption key)",
        "Org 0 needs to be reconnected (encryption key)",
    ]
    shown = "".join(m.body for m in mail.outbox) + str(list(TokenEvent.objects.values()))
    for secret in (*lost, "lost-refresh-token", "lost-client-secret"):
        assert secret not in shown
    provider.reset_records()
    frozen_clock.advance(hours=1)
    assert tasks.sweep_due_orgs().startswith("dispatched 0")  # the two are not retried
