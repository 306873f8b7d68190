"""Shared fixtures: the fake provider on loopback, an injectable clock, orgs and admins."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission, User

from tokens import clock
from tokens.demo.provider import FakeProvider
from tokens.models import Integration, Org


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        """Move time forward, e.g. advance(hours=2)."""
        self.current += timedelta(**delta)
        return self.current


SCALE_OUT_MARKERS = ("needs_postgres", "needs_redis")


def scale_out_pass() -> bool:
    """Whether this run is `make test`'s second pass, on PostgreSQL (+ Redis)."""
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_collection_modifyitems(config, items) -> None:
    """On SQLite, leave the PostgreSQL/Redis tests to the second pass (deselected, with a
    note); in that pass they run, and fail if their service is missing."""
    if scale_out_pass():
        return
    scale_out = [i for i in items if any(i.get_closest_marker(m) for m in SCALE_OUT_MARKERS)]
    if scale_out:
        config.hook.pytest_deselected(items=scale_out)
        items[:] = [i for i in items if i not in scale_out]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                f"{len(scale_out)} PostgreSQL/Redis tests are left to the PostgreSQL + Redis "
                "pass of `make test`."
            )


@pytest.fixture(autouse=True)
def scale_out_services(request, settings) -> None:
    """A test that needs Redis fails, never skips, when Redis is not configured or down."""
    if request.node.get_closest_marker("needs_redis"):
        url = settings.Q_CLUSTER.get("redis")
        assert url, "This test needs Redis: set REDIS_URL (make test does)."
        import redis

        try:
            redis.Redis.from_url(url, socket_timeout=2).ping()
        except redis.RedisError as exc:
            pytest.fail(f"Redis at {url} is not answering ({type(exc).__name__}).")


@pytest.fixture(autouse=True)
def empty_task_queue(settings) -> Iterator[None]:
    """Each test starts with an empty django-q2 queue: a Redis queue outlives a test's
    database transaction, so tasks one test queued would be another test's tasks."""
    if settings.Q_CLUSTER.get("redis"):
        from tests.brokers import purge_queue

        purge_queue()
    yield


@pytest.fixture(autouse=True)
def fresh_api_state(request) -> Iterator[None]:
    """The token API's failed-authentication counts (the "api_throttle" cache) and the served
    counts a process holds in memory do not leak from one test into the next."""
    from django.core.cache import cache, caches
    from django.core.cache.backends.db import DatabaseCache

    from tokens.api.throttle import THROTTLE_CACHE, auth_failures
    from tokens.services import served

    counts = caches[THROTTLE_CACHE]
    # In the database, the counts go with each test's transaction; a transactional test
    # (database access still open here, at its teardown) commits them, so they are cleared.
    marker = request.node.get_closest_marker("django_db")
    clear_counts = not isinstance(counts, DatabaseCache) or bool(
        marker and marker.kwargs.get("transaction")
    )
    cache.clear()
    if not isinstance(counts, DatabaseCache):
        counts.clear()
    yield
    cache.clear()
    if clear_counts:
        counts.clear()
    auth_failures._seen_failing.clear()
    served._pending.clear()


@pytest.fixture
def real_time_clock() -> Iterator[FakeClock]:
    """A movable clock that starts at the real now, for tests whose other processes or
    threads (clusters, a killed command) read the real clock."""
    from django.utils import timezone

    fake = FakeClock(timezone.now())
    clock.set_clock(fake)
    yield fake
    clock.set_clock(None)


@pytest.fixture
def frozen_clock() -> Iterator[FakeClock]:
    """Freeze the app's clock at a fixed instant; tests move it with advance()."""
    fake = FakeClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    clock.set_clock(fake)
    yield fake
    clock.set_clock(None)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """A fake Webex-shaped OAuth2 provider served over HTTP on 127.0.0.1."""
    fake = FakeProvider(client_id="console-client", client_secret="s3cr3t-client-secret-value")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def integration(db, provider: FakeProvider) -> Integration:
    """A Webex integration whose endpoints point at the fake provider."""
    return integration_on(
        provider, name="Webex test", scopes="cjp:config_read cjp:config_write spark:people_read"
    )


def integration_on(fake: FakeProvider, *, name: str, scopes: str = "") -> Integration:
    """A Webex integration with the client and every endpoint of a fake provider."""
    return Integration.objects.create(
        name=name,
        provider="webex",
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        authorize_url=fake.authorize_url,
        token_url=fake.token_url,
        userinfo_url=fake.userinfo_url,
        revocation_url=fake.revoke_url,
        scopes=scopes,
    )


@pytest.fixture
def other_provider() -> Iterator[FakeProvider]:
    """A second fake provider, behind another integration (other_integration)."""
    fake = FakeProvider(client_id="other-client", client_secret="other-client-secret-value")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def other_integration(db, other_provider: FakeProvider) -> Integration:
    """Another integration, on the second fake provider."""
    return integration_on(other_provider, name="Other test")


@pytest.fixture
def org(integration: Integration) -> Org:
    """A pending org on the fake provider's integration."""
    return Org.objects.create(name="Acme Contact Center", slug="acme", integration=integration)


def make_staff(username: str, *perms: str, superuser: bool = False) -> User:
    """A staff user holding the given `app_label.codename` permissions."""
    user = User.objects.create_user(
        username, password="pw-" + username, is_staff=True, is_superuser=superuser
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture
def operator(db) -> User:
    """Staff who may view and change orgs and connect them."""
    return make_staff("operator", "tokens.view_org", "tokens.change_org", "tokens.connect_org")


@pytest.fixture
def operator_client(client, operator: User):
    """A test client signed in as the operator."""
    client.force_login(operator)
    return client


REDIRECT_URI = "http://testserver/oauth/callback/"


def connect_org(org: Org, provider: FakeProvider) -> Org:
    """Connect `org` through the real code flow: authorize at the fake provider, then
    org_connect exchanges the code (PKCE checked by the provider).

    Each org signs in to a provider org of its own, as separate customers do (the console
    binds one org per provider org): the provider's org id when no other org holds it,
    else one made from the slug. The provider's org id is put back afterwards.
    """
    import requests

    from tokens import oauth, services

    config = org.integration.client_config()
    pkce = oauth.make_pkce_pair()
    url = oauth.build_authorize_url(
        config, redirect_uri=REDIRECT_URI, state="s", code_challenge=pkce.challenge
    )
    location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    default_org_id = provider.org_id
    provider.org_id = _free_provider_org_id(org, default_org_id)
    try:
        services.org_connect(
            org=org, code=code, code_verifier=pkce.verifier, redirect_uri=REDIRECT_URI
        )
    finally:
        provider.org_id = default_org_id
    org.refresh_from_db()
    return org


def _free_provider_org_id(org: Org, preferred: str) -> str:
    taken = Org.objects.filter(integration=org.integration_id, provider_org_id=preferred)
    if not taken.exclude(pk=org.pk).exists():
        return preferred
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"org:{org.slug}"))


@pytest.fixture
def connected_org(org: Org, provider: FakeProvider) -> Org:
    """The org, connected through the fake provider."""
    return connect_org(org, provider)


def database_url_for_subprocess() -> str:
    """A DATABASE_URL for a subprocess (a command, a cluster) to use this test's database."""
    from urllib.parse import quote

    from django.db import connection

    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    credentials = f"{quote(params['USER'])}:{quote(params['PASSWORD'])}@"
    return f"postgres://{credentials}{params['HOST']}:{params['PORT'] or 5432}/{params['NAME']}"


def store_under_lost_key(instance, field_name: str, plaintext: str) -> str:
    """Overwrite one encrypted column of `instance`'s row with `plaintext` encrypted under a
    key no setting holds (a row written by a console with another key); return the
    ciphertext."""
    from cryptography.fernet import Fernet
    from django.db.models import BinaryField, Value

    ciphertext = Fernet(Fernet.generate_key()).encrypt(plaintext.encode())
    type(instance).objects.filter(pk=instance.pk).update(
        **{field_name: Value(ciphertext, output_field=BinaryField())}
    )
    return ciphertext.decode()
