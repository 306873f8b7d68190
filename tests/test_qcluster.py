"""`manage.py qcluster` stops on SIGTERM: within 10 s when idle, within REFRESH_LEASE when
a refresh is in flight, and never with a lost or half-written token.

Real `manage.py qcluster` processes on this test's database and broker (the ORM broker on
SQLite, Redis on the PostgreSQL pass), so time here is the real clock. django-q2's own
command hangs for good when its process group gets SIGTERM (django-q2 #346).
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from django.core import checks
from django.test import override_settings
from django_q.models import Success
from django_q.tasks import async_task

from tests.test_runconsole import ROOT, child_pids, live_members
from tests.test_scale_out import cluster_env, due_orgs, wait_until
from tests.webhook_receiver import WebhookReceiver
from tokens import services
from tokens.conf import app_settings
from tokens.demo.provider import FakeProvider
from tokens.models import Integration, Org, Token, WebhookDelivery
from tokens.processes import start_group
from tokens.services import webhooks

pytestmark = pytest.mark.django_db(transaction=True)
IDLE_STOP_SECONDS = 10  # the promise for a cluster with no task in hand
START_SECONDS = 60  # generous: eight agents share two cores


def descendants(pid: int) -> list[int]:
    """Pids of the running processes below `pid`: the cluster's leader, sentinel, workers."""
    children = child_pids(pid)
    return children + [below for child in children for below in descendants(child)]


@pytest.fixture
def qcluster(settings) -> Iterator[Callable[[], tuple[subprocess.Popen, int]]]:
    """Starts `manage.py qcluster` (one worker; keywords add to its environment): the
    process and its cluster's leader (the leader of the cluster's process group). Whatever
    a test leaves running is killed."""
    started: list[tuple[subprocess.Popen, int]] = []

    def start(**extra_env: str) -> tuple[subprocess.Popen, int]:
        env = {**cluster_env(settings.Q_CLUSTER.get("redis", ""), workers=1), **extra_env}
        command = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
        process = start_group(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wait_until(lambda: child_pids(process.pid), timeout=START_SECONDS, what="the cluster")
        started.append((process, child_pids(process.pid)[0]))
        return started[-1]

    yield start
    for process, leader in started:
        for pid in live_members(process.pid) + live_members(leader):
            os.kill(pid, signal.SIGKILL)
        process.wait()


def seconds_until_exit(process: subprocess.Popen, since: float) -> float:
    """Seconds from `since` (a SIGTERM) until `process` exited; fails after REFRESH_LEASE."""
    try:
        process.wait(timeout=app_settings.REFRESH_LEASE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qcluster still runs {app_settings.REFRESH_LEASE} s after SIGTERM")
    elapsed = time.monotonic() - since
    print(f"qcluster exited {elapsed:.2f} s after SIGTERM")  # pytest -rP shows it
    return elapsed


def assert_cluster_gone(leader: int) -> None:
    """No process of the cluster's group (leader, sentinel, workers) outlives qcluster."""
    wait_until(lambda: not live_members(leader), timeout=5, what="the cluster's processes")


def wait_until_idle(process: subprocess.Popen) -> None:
    """Until the cluster has run a task (the sweep, with nothing due) and is idle again."""
    async_task("tokens.tasks.sweep_due_orgs")
    ran = Success.objects.filter(func="tokens.tasks.sweep_due_orgs")
    wait_until(ran.exists, timeout=START_SECONDS, what="the cluster to run a task")
    assert process.poll() is None


def refresh_in_flight(integration: Integration, provider: FakeProvider, hold: float) -> Org:
    """A due org whose refresh a worker has sent; the provider holds it `hold` seconds."""
    (org,) = due_orgs(integration, provider, 1)
    provider.latency = hold
    provider.reset_records()
    assert services.refresh_dispatch_due() == 1
    assert provider.wait_for_token_arrivals(1, timeout=START_SECONDS), "no refresh was sent"
    return org


def test_qcluster_stops_within_ten_seconds_of_sigterm_when_idle(qcluster):
    """SIGTERM to its process group, as runconsole or `kill -- -PGID` send it."""
    process, leader = qcluster()
    wait_until_idle(process)
    since = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    elapsed = seconds_until_exit(process, since)
    assert elapsed < IDLE_STOP_SECONDS
    assert process.returncode == 0
    assert_cluster_gone(leader)


def test_qcluster_lets_the_refresh_in_flight_finish_when_sigterm_arrives(
    integration, provider, qcluster
):
    """Must not be lost: the refresh in flight. It completes, is stored whole (the rotated
    refresh token is the provider's current one), and qcluster exits within REFRESH_LEASE."""
    provider.rotate_refresh_tokens = True
    process, leader = qcluster()
    org = refresh_in_flight(integration, provider, hold=3)
    since = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    elapsed = seconds_until_exit(process, since)
    assert elapsed < app_settings.REFRESH_LEASE
    assert process.returncode == 0
    token = Token.objects.get(org=org)
    assert (token.version, token.refreshing_until) == (2, None)
    assert provider.is_access_token_valid(token.access_token)
    assert provider.current_refresh_token_for(token.access_token) == token.refresh_token
    assert Org.objects.get(pk=org.pk).status == Org.Status.CONNECTED
    assert_cluster_gone(leader)


def test_qcluster_stops_within_ten_seconds_when_every_process_gets_sigterm(
    integration, provider, qcluster
):
    """systemd's default KillMode=control-group sends SIGTERM to every process: the worker
    dies mid-refresh, and what is left is the old token, whole, under a claim that runs out."""
    process, leader = qcluster()
    org = refresh_in_flight(integration, provider, hold=30)
    before = Token.objects.get(org=org)
    everyone = [process.pid, *descendants(process.pid)]  # the cluster's too: all of them
    since = time.monotonic()
    for pid in everyone:
        os.kill(pid, signal.SIGTERM)
    elapsed = seconds_until_exit(process, since)
    assert elapsed < IDLE_STOP_SECONDS
    assert process.returncode == 0
    assert_cluster_gone(leader)
    after = Token.objects.get(org=org)
    assert (after.access_token, after.refresh_token, after.version) == (
        before.access_token, before.refresh_token, before.version,
    )  # fmt: skip
    assert after.refreshing_until is not None


def test_qcluster_killed_outright_takes_its_cluster_with_it(qcluster):
    """runconsole kills qcluster (SIGKILL) after PROCESS_STOP_TIMEOUT: no worker may live on
    unsupervised, taking tasks that nothing will ever stop."""
    process, leader = qcluster()
    wait_until_idle(process)
    process.kill()
    process.wait()
    assert_cluster_gone(leader)


def test_a_cluster_whose_supervisor_died_while_it_started_ends_itself(settings):
    """runconsole may kill qcluster while its cluster is still starting: the cluster must
    not take that supervisor's successor (init) for its supervisor and run on for ever."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a supervisor that is already dead when the cluster starts
    command = [
        sys.executable, str(ROOT / "manage.py"), "qcluster",
        "--supervised", str(gone.pid), "--skip-checks",
    ]  # fmt: skip
    env = cluster_env(settings.Q_CLUSTER.get("redis", ""), workers=1)
    cluster = start_group(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        assert cluster.wait(timeout=START_SECONDS) == -signal.SIGKILL  # it killed its group
    finally:
        for pid in live_members(cluster.pid):
            os.kill(pid, signal.SIGKILL)
    assert_cluster_gone(cluster.pid)


@override_settings(TOKEN_CONSOLE={"REFRESH_LEASE": 60, "CLUSTER_STOP_TIMEOUT": 60})
def test_a_stop_timeout_not_below_the_refresh_lease_fails_the_system_check():
    warnings = [m for m in checks.run_checks() if m.id == "tokens.W005"]
    assert len(warnings) == 1
    assert "CLUSTER_STOP_TIMEOUT (60 s) is not below REFRESH_LEASE (60 s)" in warnings[0].msg
    with override_settings(TOKEN_CONSOLE={"REFRESH_LEASE": 60, "CLUSTER_STOP_TIMEOUT": 50}):
        assert not [m for m in checks.run_checks() if m.id == "tokens.W005"]


def test_a_delivery_queued_by_a_refresh_runs_on_the_webhook_cluster_not_the_main_one(
    integration, provider, qcluster, settings
):
    """A slow receiver must not hold a refresh worker: with only the main cluster running,
    the refresh completes and its delivery stays queued; `Q_CLUSTER_NAME=webhooks
    manage.py qcluster` then delivers it."""
    loopback = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32"}
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, **loopback}
    receiver = WebhookReceiver().start()
    try:
        (org,) = due_orgs(integration, provider, 1)
        client, _ = services.api_client_create(name="flows", all_orgs=True)
        _, secret = webhooks.webhook_set(client=client, url=receiver.url)
        receiver.secrets = [secret]
        env = {"TOKEN_CONSOLE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32"}
        qcluster(**env)
        assert services.refresh_dispatch_due() == 1
        refreshed = Token.objects.filter(org=org, version=2)
        wait_until(refreshed.exists, timeout=START_SECONDS, what="the refresh")
        # Queued after the delivery: once the main cluster has run it, it has taken
        # everything on its queue before it.
        async_task("tokens.tasks.sweep_due_orgs")
        swept = Success.objects.filter(func="tokens.tasks.sweep_due_orgs")
        wait_until(swept.exists, timeout=START_SECONDS, what="the main cluster's sweep")
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts, receiver.received) == ("pending", 0, [])

        qcluster(Q_CLUSTER_NAME="webhooks", **env)
        delivered = WebhookDelivery.objects.filter(pk=delivery.pk, status="delivered")
        wait_until(delivered.exists, timeout=START_SECONDS, what="the webhook cluster")
    finally:
        receiver.stop()
    [request] = receiver.received
    assert request.signature_ok and b'"token.refreshed"' in request.body
    ran = Success.objects.get(func="tokens.tasks.deliver_webhook")
    assert ran.cluster == "webhooks"
