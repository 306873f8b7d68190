"""EncryptedTextField: ciphertext at rest, loud errors for wrong or missing keys."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from tests.conftest import store_under_lost_key
from tokens.exceptions import EncryptionKeyError
from tokens.models import Integration, Org, Token

SECRET = "plain-client-secret-1234567890"


def make_integration(name: str = "enc") -> Integration:
    return Integration.objects.create(
        name=name,
        provider="generic",
        client_id="cid",
        client_secret=SECRET,
        authorize_url="http://127.0.0.1:9/authorize",
        token_url="http://127.0.0.1:9/token",
    )


def raw_secret(pk: int) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM tokens_integration WHERE id = %s", [pk])
        return bytes(cursor.fetchone()[0])


@pytest.mark.django_db
def test_secret_is_ciphertext_in_the_row_and_plaintext_in_the_model():
    integration = make_integration()
    stored = raw_secret(integration.pk)
    assert SECRET.encode() not in stored
    assert stored.startswith(b"gAAAA")  # a Fernet token, stored as bytes
    assert Integration.objects.get(pk=integration.pk).client_secret == SECRET


@pytest.mark.django_db
def test_wrong_key_raises_naming_the_setting_and_never_returns_ciphertext():
    integration = make_integration()
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        with pytest.raises(EncryptionKeyError) as excinfo:
            Integration.objects.get(pk=integration.pk).client_secret  # noqa: B018
    assert "FIELD_ENCRYPTION_KEYS" in str(excinfo.value)
    assert "Integration.client_secret" in str(excinfo.value)
    assert SECRET not in str(excinfo.value)


@pytest.mark.django_db
def test_missing_key_raises_naming_the_setting():
    with override_settings(FIELD_ENCRYPTION_KEYS=[]):
        with pytest.raises(EncryptionKeyError, match="FIELD_ENCRYPTION_KEYS is not set"):
            with transaction.atomic():
                make_integration()
    assert not Integration.objects.exists()


@pytest.mark.django_db
def test_old_and_new_key_both_decrypt_and_new_values_use_the_first_key(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    old = make_integration("old")
    new_key = Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        assert Integration.objects.get(pk=old.pk).client_secret == SECRET
        new = make_integration("new")
    assert Fernet(new_key.encode()).decrypt(raw_secret(new.pk)).decode() == SECRET
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert Integration.objects.get(pk=new.pk).client_secret == SECRET
        with pytest.raises(EncryptionKeyError):
            Integration.objects.get(pk=old.pk).client_secret  # noqa: B018


@pytest.mark.django_db  # the checks read the stored values and the alert channels
def test_malformed_key_is_reported_by_position_without_echoing_it():
    with override_settings(FIELD_ENCRYPTION_KEYS=["not-a-fernet-key"]):
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check")
    assert "tokens.E002" in str(excinfo.value)
    assert "entry 1" in str(excinfo.value)
    assert "not-a-fernet-key" not in str(excinfo.value)


@pytest.mark.django_db  # the checks read the stored values and the alert channels
def test_system_check_fails_without_keys():
    with override_settings(FIELD_ENCRYPTION_KEYS=[]):
        with pytest.raises(SystemCheckError, match=r"tokens\.E001"):
            call_command("check")


@pytest.mark.django_db  # the check tries the key on the stored values
def test_system_check_passes_with_a_valid_key():
    make_integration()
    call_command("check")  # raises SystemCheckError on any error


def store_token(org_slug: str = "lost") -> Token:
    integration = make_integration(org_slug)
    org = Org.objects.create(name=org_slug, slug=org_slug, integration=integration)
    return Token.objects.create(
        org=org, access_token="a", refresh_token="r", access_expires_at=timezone.now(),
        obtained_at=timezone.now(), access_fingerprint="fp",
    )  # fmt: skip


@pytest.mark.django_db
def test_rows_no_key_decrypts_load_save_and_delete_without_their_secrets():
    token = store_token()
    lost = store_under_lost_key(token, "access_token", "lost-access-token")
    loaded = Token.objects.select_related("org__integration").get(pk=token.pk)
    loaded.version = 7
    loaded.save()  # written back without reading (or needing) the lost value
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM tokens_token WHERE id = %s", [token.pk])
        assert bytes(cursor.fetchone()[0]) == lost.encode()
    with pytest.raises(EncryptionKeyError, match=r"Token\.access_token"):
        loaded.access_token  # noqa: B018
    assert loaded.refresh_token == "r"
    Org.objects.filter(pk=token.org_id).delete()
    integration = Integration.objects.get()
    store_under_lost_key(integration, "client_secret", "lost-client-secret")
    Integration.objects.get(pk=integration.pk).delete()
    assert not Integration.objects.exists() and not Token.objects.exists()


@pytest.mark.django_db
def test_system_check_fails_when_no_key_decrypts_the_stored_secrets(settings):
    token = store_token()
    stored = raw_secret(token.org.integration_id)
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check")
    message = str(excinfo.value)
    assert "tokens.E005" in message
    assert "Integration.client_secret, Token.access_token, Token.refresh_token" in message
    assert "Put the key that encrypted them back into FIELD_ENCRYPTION_KEYS" in message
    assert SECRET not in message and stored.decode() not in message
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode(), old_key]):
        call_command("check")  # the old key is back, after a new one: nothing to report


@pytest.mark.django_db
def test_system_check_warns_when_only_one_newest_value_is_under_a_lost_key():
    store_token("good")
    lost = store_under_lost_key(make_integration("newest"), "client_secret", "lost-client-secret")
    call_command("check")  # a warning: one row from elsewhere must not stop the console
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check", fail_level="WARNING")
    message = str(excinfo.value)
    assert "tokens.W002" in message and "Integration.client_secret" in message
    assert "Token." not in message
    assert "lost-client-secret" not in message and lost not in message
