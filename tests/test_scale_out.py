"""The fault suite, part two: real django-q2 clusters on PostgreSQL + Redis.

Several clusters consuming one Redis queue, a worker killed with SIGKILL mid-refresh,
and Redis restarted while tasks wait. The clusters are real `manage.py qcluster`
processes on this test's database, so time here is the real clock; where a lease must
run out, the test moves the lease (the database's notion of time) instead of sleeping.
Each test says what must not be lost, and checks it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Success
from django_q.tasks import async_task

from tests.brokers import queued_tasks
from tests.conftest import connect_org, database_url_for_subprocess
from tokens import services
from tokens.demo.provider import FakeProvider
from tokens.models import Integration, Org, Token
from tokens.processes import start_group, stop_groups

pytestmark = [
    pytest.mark.needs_postgres,
    pytest.mark.needs_redis,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parent.parent


def cluster_env(redis_url: str, workers: int) -> dict[str, str]:
    """The environment of a `manage.py qcluster` on this test's database and a Redis."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tokenconsole.settings",
        "DATABASE_URL": database_url_for_subprocess(),
        "REDIS_URL": redis_url,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "SECRET_KEY": settings.SECRET_KEY,  # django-q2 signs tasks with it
        "Q_WORKERS": str(workers),
        "Q_POLL": "0.1",
        "LOG_LEVEL": "WARNING",
    }


def start_clusters(count: int, *, redis_url: str, workers: int = 2) -> list[subprocess.Popen]:
    command = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
    env = cluster_env(redis_url, workers)
    return [
        start_group(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(count)
    ]


def wait_until(condition, *, timeout: float, what: str) -> None:
    """Poll (real time: other processes are doing the work) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def due_orgs(integration: Integration, provider: FakeProvider, count: int) -> list[Org]:
    """`count` connected orgs whose refresh is due now (on the real clock)."""
    orgs = [
        connect_org(
            Org.objects.create(name=f"Org {n}", slug=f"org-{n}", integration=integration), provider
        )
        for n in range(count)
    ]
    Token.objects.update(next_refresh_at=timezone.now() - timedelta(seconds=1))
    return orgs


@pytest.fixture
def clusters() -> Iterator[list[subprocess.Popen]]:
    """Clusters a test starts; stopped (bounded wait, then killed) whatever happens."""
    started: list[subprocess.Popen] = []
    yield started
    stop_groups(started, timeout=5)


def test_two_clusters_on_one_queue_refresh_each_org_exactly_once(integration, provider, clusters):
    """Must not be lost: any org's token (all 24 refreshed), and the rotation chain (no
    refresh token presented twice, though every org is queued twice, as overlapping
    sweeps on two machines would)."""
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    provider.latency = 0.05
    orgs = due_orgs(integration, provider, 24)
    provider.reset_records()
    clusters += start_clusters(2, redis_url=settings.Q_CLUSTER["redis"])
    assert services.refresh_dispatch_due() == 24
    for org in orgs:  # the duplicate a second sweep or a retry would queue
        async_task("tokens.tasks.refresh_org", org.pk, "schedule")
    wait_until(lambda: not Token.objects.filter(version=1).exists(), timeout=60, what="refreshes")
    # Every task, duplicates included, has run to its end (django-q2 records each one).
    finished = Success.objects.filter(func="tokens.tasks.refresh_org")
    wait_until(lambda: finished.count() == 48, timeout=60, what="all 48 tasks to finish")
    presented = Counter(c["refresh_token"] for c in provider.token_calls if c["refresh_token"])
    assert provider.refresh_call_count() == 24
    assert max(presented.values()) == 1
    assert sorted(Token.objects.values_list("version", flat=True)) == [2] * 24
    assert set(Org.objects.values_list("status", flat=True)) == {Org.Status.CONNECTED}
    assert all(provider.is_access_token_valid(t.access_token) for t in Token.objects.all())


def _pids_with_connection_to(port: int, candidates: list[int]) -> list[int]:
    """Which of the processes hold a TCP connection to 127.0.0.1:`port` (Linux /proc)."""
    remote = f"0100007F:{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2] == remote and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    holders = []
    for pid in candidates:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link == f"socket:[{inode}]" for link in links for inode in inodes):
            holders.append(pid)
    return holders


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    children = [int(p) for p in out.stdout.split()]
    return children + [d for child in children for d in _descendants(child)]


def test_a_worker_killed_mid_refresh_loses_nothing_and_the_refresh_is_retried(
    integration, provider, clusters
):
    """Must not be lost: the org's token. The worker dies while the provider holds its
    request: the stored token stays the old one, whole; once the dead worker's lease and
    dispatch mark run out, the next sweep queues it again and a new cluster refreshes it.

    The provider does not rotate refresh tokens here: a request a rotating provider has
    processed but whose answer never arrived cannot be recovered by anyone, and ends in
    needs_reconnect with one alert (tests/test_refresh.py)."""
    (org,) = due_orgs(integration, provider, 1)
    before = Token.objects.get(org=org)
    provider.latency = 30
    provider.reset_records()
    clusters += start_clusters(1, redis_url=settings.Q_CLUSTER["redis"], workers=1)
    assert services.refresh_dispatch_due() == 1
    assert provider.wait_for_token_arrivals(1, timeout=30), "no worker called the provider"
    holders = _pids_with_connection_to(provider.port, _descendants(clusters[0].pid))
    assert len(holders) == 1, f"expected one worker talking to the provider, found {holders}"
    os.kill(holders[0], signal.SIGKILL)
    stop_groups(clusters, timeout=5)  # the supervisor replaces the cluster
    clusters.clear()

    stranded = Token.objects.get(org=org)
    assert (stranded.access_token, stranded.refresh_token, stranded.version) == (
        before.access_token, before.refresh_token, before.version,
    )  # fmt: skip
    assert stranded.refreshing_until is not None  # the dead worker's lease
    assert services.refresh_dispatch_due() == 0  # leased and marked: not yet
    past = timezone.now() - timedelta(seconds=1)
    Token.objects.filter(pk=stranded.pk).update(refreshing_until=past, dispatched_until=past)
    provider.latency = 0
    clusters += start_clusters(1, redis_url=settings.Q_CLUSTER["redis"], workers=1)
    assert services.refresh_dispatch_due() == 1
    wait_until(lambda: Token.objects.get(org=org).version == 2, timeout=30, what="the retry")
    after = Token.objects.get(org=org)
    assert provider.is_access_token_valid(after.access_token)
    assert Org.objects.get(pk=org.pk).status == Org.Status.CONNECTED


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_redis(monkeypatch) -> Iterator[dict]:
    """A Redis of this test's own (so restarting it disturbs nothing else), used by this
    process's django-q2 broker and by the clusters the test starts."""
    port = _free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no"]  # fmt: skip
    server = {"process": subprocess.Popen(command, stdout=subprocess.DEVNULL), "command": command}
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setattr(Conf, "REDIS", url)
    import redis

    wait_until(lambda: _answers(redis.Redis.from_url(url)), timeout=10, what="redis")
    server["url"] = url
    yield server
    server["process"].kill()
    server["process"].wait(timeout=10)


def _answers(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # not up yet
        return False


def test_redis_restarted_while_tasks_wait_loses_no_refresh(
    integration, provider, clusters, own_redis
):
    """Must not be lost: any due org. The queue is not the source of truth: tasks lost
    with Redis are queued again by the next sweep once their dispatch marks run out."""
    orgs = due_orgs(integration, provider, 6)
    provider.reset_records()
    assert services.refresh_dispatch_due() == 6
    assert len(queued_tasks()) == 6
    own_redis["process"].kill()  # a crash and restart, without persistence
    own_redis["process"].wait(timeout=10)
    own_redis["process"] = subprocess.Popen(own_redis["command"], stdout=subprocess.DEVNULL)
    import redis

    wait_until(lambda: _answers(redis.Redis.from_url(own_redis["url"])), timeout=10, what="redis")
    assert queued_tasks() == []
    assert services.refresh_dispatch_due() == 0  # marked dispatched: the sweep waits
    clusters += start_clusters(1, redis_url=own_redis["url"])
    Token.objects.update(dispatched_until=timezone.now() - timedelta(seconds=1))  # marks run out
    assert services.refresh_dispatch_due() == 6
    wait_until(lambda: not Token.objects.filter(version=1).exists(), timeout=60, what="refreshes")
    assert provider.refresh_call_count() == 6
    assert all(Token.objects.get(org=org).version == 2 for org in orgs)
