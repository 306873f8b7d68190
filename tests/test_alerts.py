"""Alerts: headers built from data stay one safe line; a console that alerts nobody says
so (check, dashboard), and send_test_alert tries every channel."""

import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse

from tests.conftest import make_staff
from tokens import services
from tokens.alerts import HEADER_MAX_LENGTH, mail_header
from tokens.checks import check_alert_channels
from tokens.models import Org, Token

pytestmark = pytest.mark.django_db


def test_an_org_name_with_a_newline_still_gets_its_needs_reconnect_mail(
    frozen_clock, connected_org, provider
):
    Org.objects.filter(pk=connected_org.pk).update(name="Acme\nBcc: x@evil")
    frozen_clock.current = Token.objects.get(org=connected_org).next_refresh_at + timedelta(
        seconds=1
    )
    provider.fail_next("invalid_grant")
    with TestCase.captureOnCommitCallbacks(execute=True):
        result = services.token_refresh(org_id=connected_org.pk, trigger="schedule")
    assert result.outcome == "needs_reconnect"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "[Django] Acme Bcc: x@evil needs to be reconnected"
    assert message.to == ["ops@example.com"] and message.bcc == []
    assert message.message()["Bcc"] is None  # no header was smuggled in


@pytest.mark.parametrize(
    ("text", "header"),
    [
        ("Acme\r\nBcc: x@evil", "Acme Bcc: x@evil"),
        ("tab\tnul\x00del\x7fnel\x85end", "tab nul del nel end"),
        ("line\u2028paragraph\u2029end", "line paragraph end"),
        ("  spaced   out  ", "spaced out"),
        ("Ünïcødé Org — ok", "Ünïcødé Org — ok"),
    ],
)
def test_mail_header_turns_control_characters_into_single_spaces(text, header):
    assert mail_header(text) == header


def test_mail_header_bounds_the_length():
    header = mail_header("x" * 1000)
    assert len(header) == HEADER_MAX_LENGTH
    assert header.endswith("…")


def send_test_alert() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("send_test_alert", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_no_alert_channel_is_a_warning_w010(settings):
    settings.ADMINS = []
    warnings = check_alert_channels(None)
    assert [warning.id for warning in warnings] == ["tokens.W010"]
    assert "ADMINS is empty" in warnings[0].msg
    assert "send_test_alert" in warnings[0].hint
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert check_alert_channels(None) == []


def test_send_test_alert_mails_the_admins_once(settings):
    settings.ADMINS = [("Ops", "ops@example.com"), ("On call", "oncall@example.com")]
    out, err = send_test_alert()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "oncall@example.com"]
    assert "Test alert from the Token Console" in mail.outbox[0].subject
    assert out == "e-mail to ADMINS (ops@example.com, oncall@example.com): sent\n"
    assert err == ""


def test_send_test_alert_without_a_channel_says_so_and_exits_1(settings):
    settings.ADMINS = []
    with pytest.raises(CommandError, match="No alert channel is configured") as raised:
        send_test_alert()
    assert raised.value.returncode == 1
    assert mail.outbox == []


def test_send_test_alert_reports_a_channel_that_fails_and_exits_1(settings):
    with socket.socket() as probe:  # a port nothing listens on: the mail server is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 of 1 alert channels failed") as raised:
        call_command("send_test_alert", stdout=out, stderr=err)
    assert raised.value.returncode == 1
    assert "e-mail to ADMINS (ops@example.com): failed — ConnectionRefusedError" in err.getvalue()


def test_send_test_alert_says_when_mail_is_only_printed(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    out, _ = send_test_alert()
    assert "printed to the console, not sent (set EMAIL_URL)" in out


def test_the_dashboard_says_when_alerts_reach_nobody(client, settings):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    settings.ADMINS = []
    assert 'class="errornote alerts-unconfigured"' in client.get(reverse("admin:index")).text
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert "alerts-unconfigured" not in client.get(reverse("admin:index")).text
