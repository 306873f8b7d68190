"""GET /healthz: database, cluster liveness (tasks actually done), orgs by status."""

import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.db import OperationalError, connection
from django.test import override_settings
from django_q.models import Success
from django_q.tasks import async_task

from tests.conftest import store_under_lost_key
from tokens import clock
from tokens.models import Integration, Org, Token

pytestmark = pytest.mark.django_db


def task_finished(
    seconds_ago: float, func: str = "tokens.tasks.sweep_due_orgs", cluster: str | None = None
) -> None:
    """A Success row as django-q2 writes it after a worker ran a task (queued to `cluster`)."""
    stopped = clock.now() - timedelta(seconds=seconds_ago)
    Success.objects.create(
        id=uuid.uuid4().hex,
        name="task",
        func=func,
        cluster=cluster,
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=True,
    )


def make_orgs(**per_status: int) -> None:
    integration = Integration.objects.create(
        name="health",
        provider="generic",
        client_id="cid",
        client_secret="not-used",
        authorize_url="http://127.0.0.1:9/authorize",
        token_url="http://127.0.0.1:9/token",
    )
    for status, count in per_status.items():
        for n in range(count):
            Org.objects.create(
                name=f"{status} {n}", slug=f"{status}-{n}".replace("_", "-"),
                integration=integration, status=status,
            )  # fmt: skip


def test_ok_when_a_task_finished_recently(client, frozen_clock):
    make_orgs(connected=2, pending=1)
    task_finished(seconds_ago=30)
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True}
    assert body["cluster"]["alive"] is True
    assert (
        body["cluster"]["last_seen"] == (frozen_clock.current - timedelta(seconds=30)).isoformat()
    )
    assert body["cluster"]["age_seconds"] == 30
    assert body["orgs"] == {"connected": 2, "pending": 1, "needs_reconnect": 0, "disabled": 0}


def test_counts_every_status(client, frozen_clock):
    make_orgs(connected=3, pending=2, needs_reconnect=1, disabled=4)
    task_finished(seconds_ago=5)
    body = client.get("/healthz").json()
    assert body["orgs"] == {"connected": 3, "pending": 2, "needs_reconnect": 1, "disabled": 4}
    assert body["status"] == "degraded"  # serving, but an org needs a human


def test_no_cluster_ever_seen_is_503(client, frozen_clock):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "down"
    assert body["database"]["ok"] is True
    assert body["cluster"] == {
        "alive": False,
        "last_seen": None,
        "age_seconds": None,
        "max_age_seconds": 120,
    }


def test_stale_heartbeat_is_503(client, frozen_clock):
    task_finished(seconds_ago=121)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["cluster"]["alive"] is False
    assert response.json()["cluster"]["age_seconds"] == 121


def test_the_newest_task_counts_whichever_it_was(client, frozen_clock):
    task_finished(seconds_ago=600)
    task_finished(seconds_ago=10, func="tokens.tasks.refresh_org")
    assert client.get("/healthz").status_code == 200


def test_deliveries_done_by_the_webhook_cluster_do_not_make_the_main_cluster_alive(
    client, frozen_clock
):
    """The webhook cluster delivers while the main one is stuck: no sweep, no refresh."""
    task_finished(seconds_ago=600)
    task_finished(seconds_ago=5, func="tokens.tasks.deliver_webhook", cluster="webhooks")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["cluster"]["age_seconds"] == 600


@override_settings(TOKEN_CONSOLE={"HEALTH_CLUSTER_MAX_AGE": 600})
def test_the_max_age_is_a_knob(client, frozen_clock):
    task_finished(seconds_ago=300)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["cluster"]["max_age_seconds"] == 600


def test_a_sweep_run_by_django_q2_makes_the_cluster_alive(client):
    assert client.get("/healthz").status_code == 503
    async_task("tokens.tasks.sweep_due_orgs", sync=True)
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["cluster"]["alive"] is True


def test_database_down_is_503_not_500(client, frozen_clock, monkeypatch):
    task_finished(seconds_ago=5)

    def unavailable(*args, **kwargs):
        raise OperationalError("could not connect to server at db.internal as tokenconsole")

    monkeypatch.setattr(connection, "cursor", unavailable)
    response = client.get("/healthz")
    monkeypatch.undo()
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "down"
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["encryption"] == {"ok": False, "status": "unknown"}
    assert body["cluster"]["alive"] is False
    assert body["orgs"] is None
    assert "db.internal" not in response.content.decode()


def test_only_get_and_head(client, frozen_clock):
    task_finished(seconds_ago=5)
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_only_healthz_itself_is_exempt_from_the_https_redirect(client, frozen_clock, settings):
    settings.SECURE_SSL_REDIRECT = True
    task_finished(seconds_ago=5)
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz%0A").status_code == 301
    assert client.get("/healthz%0A")["Location"].startswith("https://")


def test_check_warns_when_task_results_are_not_kept(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "save_limit": -1}
    ids = [message.id for message in checks.run_checks()]
    assert "tokens.W001" in ids


def make_due_token(org: Org) -> None:
    Token.objects.create(
        org=org, access_token="access", refresh_token="refresh",
        access_expires_at=clock.now() + timedelta(minutes=5), next_refresh_at=clock.now(),
        obtained_at=clock.now(), access_fingerprint="fp",
    )  # fmt: skip


def test_a_wrong_key_is_reported_as_encryption_failing_not_as_the_cluster(client):
    make_orgs(connected=1)
    make_due_token(Org.objects.get())
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        async_task("tokens.tasks.sweep_due_orgs", sync=True)  # the sweep still works
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "down"
    assert body["cluster"]["alive"] is True
    assert body["encryption"] == {
        "ok": False,
        "status": "failing",
        "wrong_keys": True,
        "undecryptable": [
            "Integration.client_secret", "Token.access_token", "Token.refresh_token"
        ],
    }  # fmt: skip


def test_one_newest_value_under_a_lost_key_degrades(client, frozen_clock):
    make_orgs(connected=1)
    make_due_token(Org.objects.get())
    task_finished(seconds_ago=5)
    assert client.get("/healthz").json()["encryption"] == {
        "ok": True, "status": "ok", "wrong_keys": False, "undecryptable": []
    }  # fmt: skip
    lost = Integration.objects.create(
        name="lost", provider="generic", client_id="cid", client_secret="x",
        authorize_url="http://127.0.0.1:9/authorize", token_url="http://127.0.0.1:9/token",
    )  # fmt: skip
    store_under_lost_key(lost, "client_secret", "lost-client-secret")
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["encryption"]["status"] == "failing"
    assert body["encryption"]["wrong_keys"] is False
    assert body["encryption"]["undecryptable"] == ["Integration.client_secret"]
