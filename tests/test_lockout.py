"""Admin sign-in lockout (django-axes): too many failed logins for one username from one
address lock that pair out, even with the right password; a success resets the count."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import make_staff

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff() -> User:
    return make_staff("alice", "tokens.view_org")


def log_in(client: Client, password: str, **extra: str):
    return client.post(LOGIN, {"username": "alice", "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_the_right_password_is_refused_after_too_many_failures(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200  # the form again, with its error
    locked = log_in(client, "wrong")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins (5)" in locked.content
    refused = log_in(client, "pw-alice")
    assert refused.status_code == 429
    assert not signed_in(client)
    staff.refresh_from_db()
    assert staff.last_login is None
    assert staff.check_password("pw-alice")


def test_the_lock_is_for_one_username_and_address(client, staff, settings):
    make_staff("bob")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong")
    other_address = Client(REMOTE_ADDR="198.51.100.7")
    assert log_in(other_address, "pw-alice").status_code == 302
    bob = client.post(LOGIN, {"username": "bob", "password": "pw-bob"})
    assert bob.status_code == 302


def test_a_successful_login_resets_the_count(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, "pw-alice").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, "pw-alice").status_code == 302
    assert signed_in(client)


def test_behind_trusted_proxies_the_forwarded_address_is_locked(client, staff, settings):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "TRUSTED_PROXY_COUNT": 1}
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy)
    assert (
        log_in(client, "pw-alice", HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy).status_code == 429
    )
    assert (
        log_in(client, "pw-alice", HTTP_X_FORWARDED_FOR="203.0.113.6", **proxy).status_code == 302
    )


def test_without_trusted_proxies_a_forwarded_header_does_not_dodge_the_lock(
    client, staff, settings
):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}")
    assert log_in(client, "pw-alice", HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429
