"""The per-minute sweep at scale: N orgs in PostgreSQL, nothing due, then 1 % due.

Seeds N connected orgs (tokens spread over the next ten days, so none is due), then
times, over several runs each, with medians:

- the sweep's query alone (`selectors.tokens_due`) and the whole sweep task
  (`tasks.sweep_due_orgs`: due orgs plus refresh-token expiry warnings) with nothing due;
- the same with 1 % of the orgs due, the sweep marking them and queueing one task each
  on the configured broker (Redis). Between runs the marks are cleared and the queue
  emptied, so every run dispatches the same orgs.

It prints PostgreSQL's plan for the due query, to show the index on next_refresh_at at
work. Nothing is refreshed: no cluster runs.

    DATABASE_URL=postgres://tc:tc@127.0.0.1:5432/tc_scale REDIS_URL=redis://127.0.0.1:6379/3 \\
      .venv/bin/python bench/sweep_scale.py --orgs 100000 --reset
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure() -> None:
    """Settings for this process: the given database and broker, quiet logs."""
    from cryptography.fernet import Fernet

    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL=postgres://… (a bench database: --reset empties it).")
    os.environ.setdefault("SECRET_KEY", "bench-" + Fernet.generate_key().decode())
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "tokenconsole.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["TOKEN_CONSOLE_SWEEP_MAX_DISPATCH"] = "100000"


def seed(count: int) -> None:
    """`count` connected orgs with tokens due at spread-out times in the next ten days."""
    from tokens import clock
    from tokens.models import Integration, Org, Token, fingerprint

    # Many integrations, as a partner has: the sweep's rate budget is per integration.
    integrations = Integration.objects.bulk_create(
        Integration(name=f"bench {n}", provider="generic", client_id=f"c{n}",
                    client_secret="bench-secret", authorize_url="https://idp.example/a",
                    token_url="https://idp.example/t")
        for n in range(count // 1000 + 1)
    )  # fmt: skip
    now = clock.now()
    # The same two secrets for every org: the sweep never reads them.
    access, refresh = "bench-access-token", "bench-refresh-token"
    for start in range(0, count, 5000):
        orgs = Org.objects.bulk_create(
            Org(name=f"Org {n}", slug=f"org-{n}", status="connected",
                integration=integrations[n // 1000])
            for n in range(start, min(start + 5000, count))
        )  # fmt: skip
        Token.objects.bulk_create(
            Token(org=org, access_token=access, refresh_token=refresh,
                  access_fingerprint=fingerprint(access), refresh_fingerprint=fingerprint(refresh),
                  obtained_at=now, access_expires_at=now + timedelta(days=14),
                  refresh_expires_at=now + timedelta(days=90),
                  next_refresh_at=now + timedelta(seconds=60 + (org.pk * 7919) % 864_000))
            for org in orgs
        )  # fmt: skip
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def timed(action, runs: int, before=None) -> tuple[float, object]:
    """Median seconds of `action()` over `runs` runs (calling `before()` untimed first)."""
    seconds, result = [], None
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        result = action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> int:
    """Seed, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--due-share", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reset", action="store_true", help="empty the bench database first")
    args = parser.parse_args()
    configure()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_q.brokers import get_broker

    from tokens import clock, selectors, tasks
    from tokens.models import Token

    call_command("migrate", verbosity=0)
    if args.reset:
        call_command("flush", interactive=False, verbosity=0)
    if Token.objects.count() != args.orgs:
        if Token.objects.exists():
            sys.exit("The bench database holds other orgs: pass --reset to empty it first.")
        started = time.perf_counter()
        seed(args.orgs)
        print(f"seeded {args.orgs} orgs in {time.perf_counter() - started:.1f}s", flush=True)
    broker = get_broker()
    broker.purge_queue()
    now = clock.now()

    query, rows = timed(lambda: selectors.tokens_due(now=now, limit=100_000), args.runs)
    sweep, _ = timed(tasks.sweep_due_orgs, args.runs)
    assert rows == [], "nothing should be due"
    with connection.cursor() as cursor:
        sql, params = selectors.tokens_due_query(now=now, limit=100_000).query.sql_with_params()
        cursor.execute("EXPLAIN ANALYZE " + sql, params)
        plan = "\n".join("    " + line for (line,) in cursor.fetchall())

    due = int(args.orgs * args.due_share)
    due_ids = list(Token.objects.order_by("?").values_list("pk", flat=True)[:due])
    Token.objects.filter(pk__in=due_ids).update(next_refresh_at=now - timedelta(seconds=1))

    def reset_marks() -> None:
        Token.objects.filter(pk__in=due_ids).update(dispatched_until=None)
        broker.purge_queue()

    due_query, due_rows = timed(
        lambda: selectors.tokens_due(now=now, limit=100_000), args.runs, reset_marks
    )
    dispatch, dispatched = timed(tasks.sweep_due_orgs, args.runs, reset_marks)
    queued = broker.queue_size()
    reset_marks()
    Token.objects.filter(pk__in=due_ids).update(next_refresh_at=now + timedelta(days=1))

    engine = connection.settings_dict["ENGINE"].rsplit(".", 1)[-1]
    print(f"engine={engine} broker={broker.__class__.__name__} orgs={args.orgs} runs={args.runs}")
    print(f"nothing due:  due query {query * 1000:7.1f} ms   whole sweep {sweep * 1000:7.1f} ms")
    print(
        f"{due} due ({args.due_share:.0%}): due query {due_query * 1000:7.1f} ms "
        f"({len(due_rows)} rows)   whole sweep {dispatch * 1000:7.1f} ms ({dispatched}; "
        f"{queued} tasks queued)"
    )
    print("plan of the due query, nothing due:\n" + plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
