"""Two-factor sign-in for staff (django-otp TOTP) behind REQUIRE_STAFF_2FA."""

from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import make_staff

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def two_factor(settings) -> None:
    settings.REQUIRE_STAFF_2FA = True


@pytest.fixture
def enrolled(operator: User) -> TOTPDevice:
    """The operator with a TOTP device, enrolled by the command."""
    call_command("totp_enrol", operator.username, stdout=StringIO())
    return TOTPDevice.objects.get(user=operator)


def current_code(device: TOTPDevice) -> str:
    """The code an authenticator app shows now for `device`."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return str(totp.token()).zfill(device.digits)


def log_in(client: Client, code: str | None = None):
    form = {"username": "operator", "password": "pw-operator"}
    if code is not None:
        form["otp_token"] = code
    return client.post(LOGIN, form)


def test_a_valid_code_lets_staff_into_the_admin(client, two_factor, enrolled):
    answer = log_in(client, current_code(enrolled))
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("code", [None, "", "000000x", "12345678"])
def test_the_right_password_without_a_valid_code_is_not_enough(client, two_factor, enrolled, code):
    page = log_in(client, code)
    assert page.status_code == 200
    assert b'name="otp_token"' in page.content
    assert b"one-time code" in page.content
    assert b"pw-operator" not in page.content  # the password is not sent back
    assert client.get("/admin/").status_code == 302


def test_staff_without_a_device_cannot_sign_in(client, two_factor):
    make_staff("operator")
    page = log_in(client, "123456")
    assert page.status_code == 200
    assert b"no authenticator enrolled" in page.content
    assert client.get("/admin/").status_code == 302


def test_a_password_only_session_is_sent_to_the_login_page(client, two_factor, operator, org):
    client.force_login(operator)
    index = client.get("/admin/")
    assert index.status_code == 302
    assert urlsplit(index["Location"]).path == "/admin/login/"
    connect = client.get(reverse("tokens:oauth-connect", args=[org.slug]))
    assert connect.status_code == 302
    assert urlsplit(connect["Location"]).path == "/admin/login/"


def test_a_verified_session_may_connect_an_org(client, two_factor, enrolled, org, provider):
    log_in(client, current_code(enrolled))
    connect = client.post(reverse("tokens:oauth-connect", args=[org.slug]))
    assert connect.status_code == 302
    assert connect["Location"].startswith(provider.authorize_url)


def test_a_code_is_used_once(client, two_factor, enrolled, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a refused code would otherwise delay the next
    code = current_code(enrolled)
    assert log_in(client, code).status_code == 302
    again = Client()
    assert log_in(again, code).status_code == 200


def test_without_the_setting_a_password_is_enough(client, operator):
    page = client.get("/admin/login/")
    assert b'name="otp_token"' not in page.content
    assert log_in(client).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_totp_enrol_prints_the_otpauth_url_once(operator):
    out = StringIO()
    call_command("totp_enrol", "operator", "--name", "Phone", stdout=out)
    device = TOTPDevice.objects.get(user=operator, name="Phone")
    assert device.confirmed
    url = urlsplit(out.getvalue().split()[out.getvalue().split().index("app:") + 1])
    assert url.scheme == "otpauth"
    assert parse_qs(url.query)["issuer"] == ["Token Console"]
    with pytest.raises(CommandError, match="already has a TOTP device named 'Phone'"):
        call_command("totp_enrol", "operator", "--name", "Phone", stdout=StringIO())


def test_totp_enrol_refuses_unknown_and_non_staff_users():
    User.objects.create_user("visitor", password="pw")
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        call_command("totp_enrol", "nobody")
    with pytest.raises(CommandError, match="'visitor' is not active staff"):
        call_command("totp_enrol", "visitor")
    assert not TOTPDevice.objects.exists()
