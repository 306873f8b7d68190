"""The fernet_fields migration: secrets stored as Fernet text become the new field's bytes.

Each test migrates the test database back to the migration before it, writes rows the way
the old field stored them, and migrates again (so it runs on SQLite and on PostgreSQL).
"""

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from tokens.models import Integration, Token

pytestmark = pytest.mark.django_db(transaction=True)


def executor() -> MigrationExecutor:
    return MigrationExecutor(connection)


def fernet_migration() -> tuple[str, str]:
    """The conversion migration's node (found by name: it is renumbered when merged)."""
    [node] = [n for n in executor().loader.graph.nodes if n[1].endswith("_fernet_fields")]
    return node


def before() -> tuple[str, str]:
    """The tokens migration the conversion depends on."""
    graph = executor().loader.graph
    [parent] = [p.key for p in graph.node_map[fernet_migration()].parents if p.key[0] == "tokens"]
    return parent


def migrate(targets: list[tuple[str, str]]):
    """Migrate to `targets`; return the models of that state."""
    runner = executor()
    runner.migrate(targets)
    return executor().loader.project_state(targets).apps


def migrate_to_latest() -> None:
    migrate(executor().loader.graph.leaf_nodes())


@pytest.fixture
def old_apps() -> Iterator[object]:
    """The models as they were before the conversion, the database migrated back to them;
    afterwards the database is emptied and migrated forward again."""
    yield migrate([before()])
    call_command("flush", interactive=False, verbosity=0)
    migrate_to_latest()


def fernet_text(key: str, plaintext: str) -> str:
    """A value as the old field stored it: Fernet text under the raw key."""
    return Fernet(key.encode()).encrypt(plaintext.encode()).decode()


def store_old_rows(apps, key: str, *, slug: str = "acme", access: str | None = None) -> tuple:
    """An integration and an org with a token (no refresh token), written in the old format."""
    now = timezone.now()
    integration = apps.get_model("tokens", "Integration").objects.create(
        name=f"int {slug}", provider="generic", client_id="cid",
        client_secret=fernet_text(key, f"client-secret-of-{slug}"),
        authorize_url="https://idp.example/authorize", token_url="https://idp.example/token",
    )  # fmt: skip
    org = apps.get_model("tokens", "Org").objects.create(
        name=slug, slug=slug, integration=integration
    )
    token = apps.get_model("tokens", "Token").objects.create(
        org=org, integration=integration, refresh_token="",
        access_token=access or fernet_text(key, f"access-token-of-{slug}"),
        access_expires_at=now, obtained_at=now, access_fingerprint="fp",
    )  # fmt: skip
    return integration.pk, token.pk


def raw(table: str, column: str, pk: int) -> object:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_old_text_values_read_through_the_models_after_migrating(old_apps, settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    integration_pk, token_pk = store_old_rows(old_apps, old_key)
    apps = old_apps
    token = apps.get_model("tokens", "Token").objects.get(pk=token_pk)
    token.refresh_token = fernet_text(new_key, "refresh-token-of-acme")  # under the other key
    token.save()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        migrate_to_latest()
        assert Integration.objects.get(pk=integration_pk).client_secret == "client-secret-of-acme"
        token = Token.objects.get(pk=token_pk)
        assert token.access_token == "access-token-of-acme"
        assert token.refresh_token == "refresh-token-of-acme"
    stored = bytes(raw("tokens_token", "access_token", token_pk))
    assert Fernet(new_key.encode()).decrypt(stored) == b"access-token-of-acme"  # first key


def test_a_blank_value_stays_blank_and_needs_no_key(old_apps, settings):
    _, token_pk = store_old_rows(old_apps, settings.FIELD_ENCRYPTION_KEYS[0])
    migrate_to_latest()
    assert bytes(raw("tokens_token", "refresh_token", token_pk)) == b""
    assert Token.objects.get(pk=token_pk).refresh_token == ""


def test_a_value_no_key_decrypts_stops_the_migration_naming_its_row_and_changes_nothing(
    old_apps, settings
):
    key = settings.FIELD_ENCRYPTION_KEYS[0]
    store_old_rows(old_apps, key, slug="good")
    lost = fernet_text(Fernet.generate_key().decode(), "lost-access-token")
    _, bad_pk = store_old_rows(old_apps, key, slug="bad", access=lost)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        migrate_to_latest()
    message = str(excinfo.value)
    assert f"Token.access_token of pk {bad_pk}" in message
    assert "FIELD_ENCRYPTION_KEYS" in message
    assert "lost-access-token" not in message and lost not in message
    assert fernet_migration() not in executor().loader.applied_migrations
    assert raw("tokens_token", "access_token", bad_pk) == lost  # still the old text column


def test_a_database_with_secrets_refuses_to_migrate_without_keys(old_apps, settings):
    store_old_rows(old_apps, settings.FIELD_ENCRYPTION_KEYS[0])
    with override_settings(FIELD_ENCRYPTION_KEYS=[]):
        with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is not set"):
            migrate_to_latest()
    assert fernet_migration() not in executor().loader.applied_migrations


def test_migrating_back_writes_the_old_text_format(old_apps, settings):
    key = settings.FIELD_ENCRYPTION_KEYS[0]
    integration_pk, token_pk = store_old_rows(old_apps, key)
    migrate_to_latest()
    Token.objects.filter(pk=token_pk).update(access_token="access-token-after")
    migrate([before()])
    stored = raw("tokens_token", "access_token", token_pk)
    assert isinstance(stored, str)
    assert Fernet(key.encode()).decrypt(stored.encode()) == b"access-token-after"
    assert raw("tokens_token", "refresh_token", token_pk) == ""
    secret = raw("tokens_integration", "client_secret", integration_pk)
    assert Fernet(key.encode()).decrypt(secret.encode()) == b"client-secret-of-acme"
