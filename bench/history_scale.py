"""Pages that read the token history, timed as the history grows to millions of events.

Seeds 200 orgs, then grows the history step by step to each of --sizes events (one
INSERT ... SELECT over a generated series per step, so 5,000,000 events take minutes, not
hours) and refills the running totals from the events with the upgrade migration's own
code, so /metrics answers exactly what the history holds. At each size it times, in
process with Django's test client as a logged-in superuser, the median of --runs requests
(after one untimed warm-up) of:

- `/metrics` (from 127.0.0.1, allowed by default);
- the token history list, unfiltered;
- the history filtered by kind (`refresh_failed`, 5 % of events) and by one org (0.5 %);
- one org's admin page (its latest events inline);
- the admin index (the dashboard: the last 24 hours of refreshes, the timeline).

It prints one line per size and the growth factor of each page against the smallest size.
Events are spaced 6 s apart going back from now (5,000,000 span 347 days): 90 % refreshes,
5 % failed refreshes, the rest connects, disconnects and failed connects.

    su postgres -c "createdb -O tc tc_hbench"   # a bench database: --reset empties it
    DATABASE_URL=postgres://tc:tc@127.0.0.1:5432/tc_hbench REDIS_URL= \\
      .venv/bin/python bench/history_scale.py --reset \\
      --sizes 2000,20000,200000,1000000,5000000
    DATABASE_URL=sqlite:///$PWD/var/history-bench.sqlite3 REDIS_URL= \\
      .venv/bin/python bench/history_scale.py --reset --sizes 2000,20000,200000,400000
"""

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORGS = 200
STEP_SECONDS = 6
PAGES = ["metrics", "history", "by kind", "by org", "org page", "dashboard"]


def configure() -> None:
    """Settings for this process: the given database, plain http, no 2FA, quiet logs."""
    from cryptography.fernet import Fernet

    if not os.environ.get("DATABASE_URL"):
        sys.exit("Set DATABASE_URL (a bench database: --reset empties it).")
    os.environ.setdefault("SECRET_KEY", "bench-" + Fernet.generate_key().decode())
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "tokenconsole.settings"
    os.environ.update(
        {"DEBUG": "false", "ALLOWED_HOSTS": "testserver", "REQUIRE_STAFF_2FA": "false",
         "LOG_LEVEL": "WARNING"}
    )  # fmt: skip


def seed_orgs() -> list[int]:
    """ORGS connected orgs on one integration; their ids, which must be consecutive."""
    from tokens.models import Integration, Org

    integration = Integration.objects.create(
        name="bench", provider="generic", client_id="bench", client_secret="bench-secret",
        authorize_url="https://idp.example/a", token_url="https://idp.example/t",
    )  # fmt: skip
    Org.objects.bulk_create(
        Org(name=f"Org {n}", slug=f"org-{n}", status="connected", integration=integration)
        for n in range(ORGS)
    )
    ids = list(Org.objects.order_by("pk").values_list("pk", flat=True))
    if ids[-1] - ids[0] != ORGS - 1:
        sys.exit("The org ids are not consecutive: use an empty database (--reset).")
    return ids


def events_sql(vendor: str, table: str) -> str:
    """INSERT ... SELECT of events over a series of i (see grow for the parameters)."""
    # Modulo is %% here: psycopg and Django's SQLite cursor both read it as one %.
    k = "(i %% 100)"
    if vendor == "postgresql":
        series = "generate_series(%s::int, %s::int) AS s(i)"
        when = "(%s::timestamptz - make_interval(secs => i * {step}))"
        prefix = ""
    else:
        series = "s"
        when = "datetime(%s, '-' || (i * {step}) || ' seconds')"
        prefix = "WITH RECURSIVE s(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
    when = when.format(step=STEP_SECONDS)
    columns = (
        "org_id, org_slug, kind, trigger, outcome, created_at, error_code, message, "
        "access_fingerprint, refresh_fingerprint, token_version, duration_ms"
    )
    return (
        f"{prefix}INSERT INTO {table} ({columns}) SELECT "  # noqa: S608 - constants only
        f"%s + (i %% {ORGS}), 'org-' || (i %% {ORGS}), "
        f"CASE WHEN {k} < 90 THEN 'refreshed' WHEN {k} < 95 THEN 'refresh_failed' "
        f"WHEN {k} < 98 THEN 'connected' WHEN {k} = 98 THEN 'disconnected' "
        "ELSE 'connect_failed' END, "
        f"CASE WHEN {k} >= 95 AND {k} <> 98 THEN 'callback' WHEN {k} = 98 THEN 'manual' "
        f"WHEN {k} %% 10 = 8 THEN 'manual' WHEN {k} %% 10 = 9 THEN 'api' ELSE 'schedule' END, "
        f"CASE WHEN ({k} >= 90 AND {k} < 95) OR {k} = 99 THEN 'failure' "
        f"WHEN {k} = 7 THEN 'warning' ELSE 'success' END, "
        f"{when}, CASE WHEN {k} >= 90 AND {k} < 95 THEN 'server_error' ELSE '' END, '', "
        "'', '', i %% 1000, "
        f"CASE WHEN {k} < 95 THEN 40 + (i * 37) %% 2500 ELSE NULL END FROM {series}"
    )


def grow(first: int, last: int, first_org: int) -> None:
    """Add events first..last (inclusive), then refill the running totals from all events."""
    from django.apps import apps
    from django.db import connection, transaction

    from tokens import clock
    from tokens.models import TokenEvent, TokenEventRollup

    table = connection.ops.quote_name(TokenEvent._meta.db_table)
    sql = events_sql(connection.vendor, table)
    now = clock.now()
    if connection.vendor != "postgresql":
        now = now.strftime("%Y-%m-%d %H:%M:%S")
    chunk = 500_000
    for start in range(first, last + 1, chunk):
        end = min(start + chunk - 1, last)
        if connection.vendor == "postgresql":
            params = [first_org, now, start, end]
        else:
            params = [start, end, first_org, now]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    migration = importlib.import_module("tokens.migrations.0006_event_rollups")
    with transaction.atomic():
        TokenEventRollup.objects.all().delete()
        migration.fill_rollups(apps, None)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def time_pages(client, org_id: int, runs: int) -> dict[str, float]:
    """Median seconds of each page over `runs` requests, after one warm-up request."""
    urls = {
        "metrics": "/metrics",
        "history": "/admin/tokens/tokenevent/",
        "by kind": "/admin/tokens/tokenevent/?kind__exact=refresh_failed",
        "by org": f"/admin/tokens/tokenevent/?org__id__exact={org_id}",
        "org page": f"/admin/tokens/org/{org_id}/change/",
        "dashboard": "/admin/",
    }
    medians = {}
    for name in PAGES:
        seconds = []
        for run in range(runs + 1):
            started = time.perf_counter()
            response = client.get(urls[name])
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (name, response.status_code)
            if run:
                seconds.append(elapsed)
        medians[name] = statistics.median(seconds)
    return medians


def check_metrics(client) -> None:
    """/metrics counts every refresh attempt seeded (90 % + 5 % of the events)."""
    from prometheus_client.parser import text_string_to_metric_families

    from tokens.models import TokenEvent

    text = client.get("/metrics").content.decode()
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "tokenconsole_refresh_attempts"
    )
    expected = TokenEvent.objects.filter(kind__in=["refreshed", "refresh_failed"]).count()
    assert sum(s.value for s in family.samples) == expected, "totals differ from the events"


def main() -> int:
    """Seed, grow, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000,400000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reset", action="store_true", help="empty the bench database first")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    configure()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from tokens.models import TokenEvent

    call_command("migrate", verbosity=0)
    if args.reset:
        call_command("flush", interactive=False, verbosity=0)
    if TokenEvent.objects.exists():
        sys.exit("The bench database holds events: pass --reset to empty it first.")
    org_ids = seed_orgs()
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("bench", "b@example.com", "pw"))
    engine = connection.vendor
    print(f"engine={engine} orgs={ORGS} runs={args.runs} (median ms; growth vs {sizes[0]:,})")
    print(f"{'events':>10} " + " ".join(f"{name:>10}" for name in PAGES) + "   seeded in")
    seeded, first = 0, None
    for size in sizes:
        started = time.perf_counter()
        grow(seeded, size - 1, org_ids[0])
        seed_seconds = time.perf_counter() - started
        seeded = size
        check_metrics(client)
        medians = time_pages(client, org_ids[0], args.runs)
        first = first or medians
        cells = " ".join(f"{medians[name] * 1000:10.1f}" for name in PAGES)
        print(f"{size:>10,} {cells}   {seed_seconds:.0f}s", flush=True)
        growth = " ".join(f"{medians[name] / first[name]:9.2f}x" for name in PAGES)
        print(f"{'growth':>10} {growth}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
