"""Key rotation: every stored secret moves to the first key, in resumable batches."""

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import BinaryField, Value
from django.test import override_settings

from tokens import clock
from tokens.models import Integration, Org, Token, TokenEvent
from tokens.services import keys

pytestmark = pytest.mark.django_db

COLUMNS = [
    ("tokens_integration", "client_secret"),
    ("tokens_token", "access_token"),
    ("tokens_token", "refresh_token"),
]


@pytest.fixture
def old_key(settings) -> str:
    return settings.FIELD_ENCRYPTION_KEYS[0]


@pytest.fixture
def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def secrets_stored(old_key) -> dict[tuple[str, int], str]:
    """Three integrations and three orgs with tokens (one without a refresh token), under
    the old key; returns every plaintext by (model.field, pk)."""
    plain = {}
    for n in range(1, 4):
        integration = Integration.objects.create(
            name=f"enc {n}",
            provider="generic",
            client_id=f"cid-{n}",
            client_secret=f"client-secret-{n}-plaintext",
            authorize_url="http://127.0.0.1:9/authorize",
            token_url="http://127.0.0.1:9/token",
        )
        org = Org.objects.create(name=f"Org {n}", slug=f"org-{n}", integration=integration)
        refresh = f"refresh-token-{n}-plaintext" if n < 3 else ""
        token = Token.objects.create(
            org=org,
            access_token=f"access-token-{n}-plaintext",
            refresh_token=refresh,
            access_expires_at=clock.now(),
            obtained_at=clock.now(),
            access_fingerprint="fp",
        )
        plain[("Integration.client_secret", integration.pk)] = integration.client_secret
        plain[("Token.access_token", token.pk)] = token.access_token
        if refresh:
            plain[("Token.refresh_token", token.pk)] = refresh
    return plain


def raw_values() -> list[str]:
    """Every non-blank encrypted column value as stored."""
    values = []
    with connection.cursor() as cursor:
        for table, column in COLUMNS:
            cursor.execute(f"SELECT {column} FROM {table} ORDER BY id")  # noqa: S608
            values += [bytes(row[0]).decode() for row in cursor.fetchall() if row[0]]
    return values


def plaintexts_read() -> dict[tuple[str, int], str]:
    """Every secret read through the models (with whatever keys are configured now)."""
    read = {}
    for integration in Integration.objects.all():
        read[("Integration.client_secret", integration.pk)] = integration.client_secret
    for token in Token.objects.all():
        read[("Token.access_token", token.pk)] = token.access_token
        if token.refresh_token:
            read[("Token.refresh_token", token.pk)] = token.refresh_token
    return read


def rotate(**options) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out, **options)
    return out.getvalue()


def test_encrypted_fields_are_found_through_the_models_meta():
    found = {(m.__name__, f.name) for m, fields in keys.encrypted_fields().items() for f in fields}
    assert found == {
        ("Integration", "client_secret"),
        ("Token", "access_token"),
        ("Token", "refresh_token"),
        ("Webhook", "signing_secret"),
        ("Webhook", "previous_signing_secret"),
        ("AlertChannel", "webex_bot_token"),
    }


def test_after_rotation_every_value_reads_with_only_the_new_key(secrets_stored, old_key, new_key):
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        output = rotate(batch_size=2)
    assert "8 re-encrypted, 0 already current" in output
    assert "Integration pk" in output and "Token pk" in output  # a progress line per batch
    assert all(Fernet(new_key.encode()).decrypt(v.encode()) for v in raw_values())
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert plaintexts_read() == secrets_stored


def test_a_second_run_rewrites_nothing(secrets_stored, old_key, new_key):
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        rotate()
        stored = raw_values()
        output = rotate()
    assert "0 re-encrypted, 8 already current" in output
    assert raw_values() == stored


def test_an_interrupted_rotation_resumes_where_it_stopped(
    secrets_stored, old_key, new_key, monkeypatch
):
    real_rotate_rows = keys._rotate_rows
    calls = []

    def fail_on_second_batch(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("killed mid-rotation")
        return real_rotate_rows(*args)

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        monkeypatch.setattr(keys, "_rotate_rows", fail_on_second_batch)
        with pytest.raises(RuntimeError):
            rotate(batch_size=1)
        current = [v for v in raw_values() if _under(new_key, v)]
        assert len(current) == 1  # the first batch (one integration) was committed
        assert not TokenEvent.objects.filter(kind="key_rotated").exists()
        monkeypatch.setattr(keys, "_rotate_rows", real_rotate_rows)
        output = rotate(batch_size=1)
    assert "7 re-encrypted, 1 already current" in output
    assert all(_under(new_key, v) for v in raw_values())
    event = TokenEvent.objects.get(kind="key_rotated")
    assert "7 re-encrypted, 1 already current" in event.message
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert plaintexts_read() == secrets_stored


def test_a_value_rewritten_meanwhile_is_not_overwritten(
    secrets_stored, old_key, new_key, monkeypatch
):
    token = Token.objects.order_by("pk").first()
    real_reencrypt = keys._reencrypt

    def refresh_meanwhile(model, field, pk, old):
        new = real_reencrypt(model, field, pk, old)
        if model is Token and field.name == "access_token" and pk == token.pk:
            Token.objects.filter(pk=pk).update(access_token="newer-access-token")
        return new

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        monkeypatch.setattr(keys, "_reencrypt", refresh_meanwhile)
        output = rotate()
        assert Token.objects.get(pk=token.pk).access_token == "newer-access-token"
    assert "7 re-encrypted, 0 already current, 1 changed meanwhile" in output
    assert "run the command once more" in output


def test_one_key_means_nothing_to_do(secrets_stored):
    stored = raw_values()
    output = rotate()
    assert "nothing to do" in output
    assert raw_values() == stored
    assert not TokenEvent.objects.exists()


def test_an_undecryptable_value_stops_with_its_model_field_and_pk(secrets_stored, old_key, new_key):
    lost_key = Fernet(Fernet.generate_key())
    bad = Token.objects.order_by("pk").last()
    lost_ciphertext = lost_key.encrypt(b"lost-access-token").decode()
    Token.objects.filter(pk=bad.pk).update(
        access_token=Value(lost_ciphertext.encode(), output_field=BinaryField())
    )
    tokens_before = _token_raw_values()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        with pytest.raises(CommandError) as excinfo:
            rotate(batch_size=10)
    message = str(excinfo.value)
    assert f"Token.access_token of pk {bad.pk}" in message
    assert "FIELD_ENCRYPTION_KEYS" in message
    assert "lost-access-token" not in message and lost_ciphertext not in message
    assert _token_raw_values() == tokens_before  # the failed batch changed nothing
    assert not TokenEvent.objects.filter(kind="key_rotated").exists()


def test_the_key_rotated_event_and_output_hold_no_secret(secrets_stored, old_key, new_key):
    before = raw_values()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        output = rotate()
    event = TokenEvent.objects.get(kind="key_rotated")
    assert (event.org, event.trigger, event.outcome) == (None, "command", "success")
    assert "8 re-encrypted" in event.message
    dumped = json.dumps(list(TokenEvent.objects.values()), default=str) + output
    for secret in [*secrets_stored.values(), *before, *raw_values(), old_key, new_key]:
        assert secret not in dumped


def test_batch_size_must_be_positive():
    with pytest.raises(CommandError, match="--batch-size"):
        rotate(batch_size=0)


def _under(key: str, ciphertext: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(ciphertext.encode())
    except Exception:
        return False
    return True


def _token_raw_values() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, access_token, refresh_token FROM tokens_token ORDER BY id")
        return [(pk, *map(bytes, values)) for pk, *values in cursor.fetchall()]


def test_a_wrong_only_key_is_reported_not_taken_for_nothing_to_do(secrets_stored):
    stored = raw_values()
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        with pytest.raises(CommandError) as excinfo:
            rotate()
    message = str(excinfo.value)
    assert "Integration.client_secret, Token.access_token, Token.refresh_token" in message
    assert "Put the key that encrypted them back into FIELD_ENCRYPTION_KEYS" in message
    assert "nothing to do" not in message
    for secret in [*secrets_stored.values(), *stored]:
        assert secret not in message
    assert raw_values() == stored
