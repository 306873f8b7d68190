"""Refresh throughput: N due orgs, a fake provider with added latency, a real cluster.

Seeds N connected orgs whose tokens are all due, starts `manage.py qcluster` (the
ORM broker on SQLite by default; Redis when REDIS_URL is set), runs one sweep, and
waits until every org holds a new token. Prints refreshes per second and the number
of duplicate provider calls (refresh tokens presented more than once).

    .venv/bin/python bench/refresh_throughput.py --orgs 2000 --latency 0.05 --workers 4

Set DATABASE_URL / REDIS_URL to measure PostgreSQL + Redis instead of SQLite.

Beside the main cluster(s) it starts the webhook cluster (`Q_CLUSTER_NAME=webhooks`,
--webhook-workers), as `runconsole` does, with or without webhooks. With
--webhook-latency SECONDS, an all-orgs API client has a webhook to a receiver on
127.0.0.1 that takes that long to answer.
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """Environment shared by this process and the cluster it starts."""
    from cryptography.fernet import Fernet

    database_url = os.environ.get("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    env = {
        "DJANGO_SETTINGS_MODULE": "tokenconsole.settings",
        "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "Q_WORKERS": str(args.workers),
        "Q_BULK": str(args.bulk),
        "Q_POLL": "0.05",
        "Q_SAVE_LIMIT": "-1",  # store no task results: the TokenEvents are the record
        "LOG_LEVEL": "WARNING",
        "TOKEN_CONSOLE_REFRESH_RATE_PER_MINUTE": str(args.orgs),
        "TOKEN_CONSOLE_SWEEP_MAX_DISPATCH": str(args.orgs),
    }
    env["Q_WEBHOOK_WORKERS"] = str(args.webhook_workers)
    if args.webhook_latency is not None:
        env["TOKEN_CONSOLE_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "127.0.0.1/32"
    if not database_url.startswith("sqlite"):
        # Measure the scale-out setup as docs/operations.md deploys it: each worker keeps
        # its PostgreSQL connection instead of opening (and authenticating) one per task.
        env["CONN_MAX_AGE"] = os.environ.get("CONN_MAX_AGE", "300")
    os.environ.update(env)
    return {**os.environ, **env}


def seed(count: int, provider) -> None:
    """Create `count` connected orgs whose tokens are due now (fixture data, bulk)."""
    from tokens import clock
    from tokens.models import Integration, Org, Token, fingerprint

    integration = Integration.objects.create(
        name="bench", provider="generic", client_id=provider.client_id,
        client_secret=provider.client_secret, authorize_url=provider.authorize_url,
        token_url=provider.token_url,
    )  # fmt: skip
    orgs = Org.objects.bulk_create(
        Org(name=f"Org {n}", slug=f"org-{n}", integration=integration, status="connected")
        for n in range(count)
    )
    now = clock.now()
    tokens = []
    for org in orgs:
        access, refresh = provider.issue_tokens_directly()
        tokens.append(
            Token(
                org=org,
                access_token=access,
                refresh_token=refresh,
                access_fingerprint=fingerprint(access),
                refresh_fingerprint=fingerprint(refresh),
                obtained_at=now - timedelta(hours=1),
                access_expires_at=now + timedelta(minutes=5),
                next_refresh_at=now - timedelta(seconds=1),
            )
        )
    Token.objects.bulk_create(tokens, batch_size=500)


def webhook_receiver(latency: float | None):
    """With a latency: a slow receiver, and an all-orgs client whose webhook points there."""
    if latency is None:
        return None
    from tests.webhook_receiver import WebhookReceiver
    from tokens import services
    from tokens.services.webhooks import webhook_set

    receiver = WebhookReceiver(delay=latency).start()
    client, _ = services.api_client_create(name="bench-hooks", all_orgs=True)
    _, secret = webhook_set(client=client, url=receiver.url)
    receiver.secrets = [secret]
    return receiver


def webhook_count(status: str | None) -> int:
    """Webhook deliveries recorded (with that status)."""
    from tokens.models import WebhookDelivery

    rows = WebhookDelivery.objects.all()
    return (rows.filter(status=status) if status else rows).count()


def main() -> int:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="provider seconds per answer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--bulk", type=int, default=1, help="django-q2 tasks per dequeue")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--webhook-latency", type=float, default=None, help="receiver seconds per delivery"
    )
    parser.add_argument("--webhook-workers", type=int, default=4)
    parser.add_argument(
        "--reset",
        action="store_true",
        help="empty the DATABASE_URL database and the broker queue first (a bench database!)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tc-bench-"))
    env = configure(args, workdir)
    import django

    django.setup()
    from django.core.management import call_command

    from tokens import services
    from tokens.conf import webhook_cluster_name
    from tokens.demo.provider import FakeProvider
    from tokens.models import Token
    from tokens.processes import start_group, stop_groups

    call_command("migrate", verbosity=0)
    if args.reset:
        from django_q.brokers import get_broker

        call_command("flush", interactive=False, verbosity=0)
        get_broker().purge_queue()
        if webhook_cluster_name():  # deliveries an earlier run left queued
            get_broker(webhook_cluster_name()).purge_queue()
    elif Token.objects.exists():
        sys.exit("The bench database holds orgs already: pass --reset to empty it first.")
    provider = FakeProvider(client_id="bench", client_secret="bench-secret").start()
    provider.latency = args.latency
    provider.expires_in = 3600
    seed(args.orgs, provider)
    provider.reset_records()
    receiver = webhook_receiver(args.webhook_latency)

    manage = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
    clusters = [
        start_group(manage, cwd=ROOT, env=env, stdout=sys.stderr) for _ in range(args.clusters)
    ]
    if hooks := webhook_cluster_name():  # as runconsole starts it, webhooks or not
        hooks_env = {**env, "Q_CLUSTER_NAME": hooks}
        clusters.append(start_group(manage, cwd=ROOT, env=hooks_env, stdout=sys.stderr))
    try:
        time.sleep(2)  # let the clusters spawn their workers before the clock starts
        started = time.monotonic()
        dispatched = services.refresh_dispatch_due()
        dispatch_seconds = time.monotonic() - started
        done = 0
        while time.monotonic() - started < args.timeout:
            done = Token.objects.filter(version__gte=2).count()
            if done >= args.orgs:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        delivered = webhook_count("delivered")
    finally:
        stop_groups(clusters, timeout=5)
        provider.stop()

    presented = Counter(
        call["refresh_token"] for call in provider.token_calls if call["refresh_token"]
    )
    duplicates = sum(n - 1 for n in presented.values() if n > 1)
    engine = env["DATABASE_URL"].split(":", 1)[0]
    broker = "redis" if env.get("REDIS_URL") else "orm"
    print(
        f"engine={engine} broker={broker} clusters={args.clusters} workers={args.workers} "
        f"orgs={args.orgs} latency_ms={args.latency * 1000:.0f}"
    )
    print(f"dispatched={dispatched} in {dispatch_seconds:.2f}s")
    print(f"refreshed={done} seconds={elapsed:.1f} rate={done / elapsed:.1f}/s")
    print(f"provider_calls={sum(presented.values())} duplicates={duplicates}")
    if receiver is not None:
        print(
            f"webhook_latency_ms={args.webhook_latency * 1000:.0f} "
            f"webhook_workers={args.webhook_workers} deliveries={webhook_count(None)} "
            f"delivered_when_refreshes_done={delivered} received={len(receiver.received)}"
        )
        receiver.stop()
    return 0 if done >= args.orgs and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
