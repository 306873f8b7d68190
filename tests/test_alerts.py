"""Alert mail: headers built from data stay one safe line."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import TestCase

from tokens import services
from tokens.alerts import HEADER_MAX_LENGTH, mail_header
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
