"""The token API's failed-authentication counts are shared by every process (`make serve`
runs two web workers): in a database table without Redis, in Redis with it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection

from tokens import services
from tokens.api.throttle import THROTTLE_CACHE
from tokens.cache import CountingDatabaseCache
from tokens.models import Org

ROOT = Path(__file__).resolve().parent.parent
DATABASE_THROTTLE = {
    "BACKEND": "tokens.cache.CountingDatabaseCache",
    "LOCATION": "tokens_api_throttle",
}


def database_url() -> str:
    """The test database as a DATABASE_URL, for another process to use."""
    database = django_settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    return (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:"
        f"{database['PORT']}/{database['NAME']}"
    )


def fail_in_another_process(address: str, times: int) -> None:
    """Record failed authentications from `address` in a separate Python process, as the
    other web worker would (same settings, database and Redis; its own memory)."""
    code = (
        "import django; django.setup()\n"
        "from tokens.api.throttle import auth_failures\n"
        f"for _ in range({times}): auth_failures.failed({address!r})\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True
    )


@pytest.mark.django_db(transaction=True)  # the other process sees only committed rows
def test_failures_counted_by_another_process_block_the_address_here(
    client, connected_org: Org, settings
):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "API_AUTH_FAILURE_LIMIT": 4}
    _, key = services.api_client_create(name="flow", orgs=[connected_org])
    url, address = "/api/v1/orgs/acme/token", "198.51.100.20"
    wrong = client.get(url, HTTP_AUTHORIZATION="Bearer tc_wrong", REMOTE_ADDR=address)
    assert wrong.status_code == 401  # this process has seen the address fail once ...
    fail_in_another_process(address, times=3)  # ... the other worker three times
    blocked = client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR=address)
    assert blocked.status_code == 429
    other = client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="198.51.100.21")
    assert other.status_code == 200


@pytest.mark.django_db
def test_database_counts_add_up_and_keep_the_window_of_the_first_failure(settings):
    settings.CACHES = {**settings.CACHES, THROTTLE_CACHE: DATABASE_THROTTLE}
    call_command("createcachetable", verbosity=0)  # in the test's transaction
    counts = caches[THROTTLE_CACHE]
    assert isinstance(counts, CountingDatabaseCache)
    counts.add("addr", 1, timeout=60)  # shorter than the default timeout (300 s)
    expires = cache_row_expiry(counts.make_key("addr"))
    assert counts.incr("addr") == 2
    assert counts.incr("addr", 3) == 5
    assert counts.get("addr") == 5
    assert cache_row_expiry(counts.make_key("addr")) == expires
    counts.set("gone", 1, timeout=0)  # already expired
    with pytest.raises(ValueError):
        counts.incr("gone")
    with pytest.raises(ValueError):
        counts.incr("never-set")


def cache_row_expiry(db_key: str) -> object:
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM tokens_api_throttle WHERE cache_key = %s", [db_key])
        return cursor.fetchone()[0]
