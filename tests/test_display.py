"""How the console shows times: relative wording, the exact time in TIME_ZONE as tooltip."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tokens import display
from tokens.models import Token

NOW = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "wording"),
    [
        (timedelta(days=13, hours=2), "in 13 days"),
        (timedelta(days=1, hours=1), "in 25 h"),
        (-timedelta(hours=2, minutes=5), "2 h ago"),
        (timedelta(minutes=7, seconds=30), "in 7 min"),
        (-timedelta(days=1, hours=1), "25 h ago"),
        (-timedelta(days=3), "3 days ago"),
        (timedelta(seconds=20), "just now"),
    ],
)
def test_relative_wording(delta, wording):
    assert display.relative(NOW + delta, NOW) == wording


def test_time_element_has_the_exact_time_in_the_time_zone_without_microseconds(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    moment = NOW + timedelta(days=13)
    html = str(display.when(moment, NOW))
    assert html == (
        '<time datetime="2026-11-14T12:00:00+00:00" title="2026-11-14 13:00:00 CET">'
        "in 13 days</time>"
    )
    assert display.when(None) == "—"


def test_relative_time_is_measured_from_the_injected_clock(frozen_clock):
    moment = frozen_clock.current + timedelta(hours=5)
    assert ">in 5 h<" in str(display.when(moment))
    frozen_clock.advance(hours=7)
    assert ">2 h ago<" in str(display.when(moment))


@pytest.mark.django_db
def test_org_pages_show_times_relative_with_the_exact_time_and_no_microseconds(
    client, django_user_model, connected_org, frozen_clock, settings
):
    settings.TIME_ZONE = "America/New_York"
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.com", "pw"))
    Token.objects.filter(org=connected_org).update(
        refresh_expires_at=frozen_clock.current + timedelta(days=13, minutes=1, microseconds=7)
    )
    for url in (
        reverse("admin:tokens_org_changelist"),
        reverse("admin:tokens_org_change", args=[connected_org.pk]),
    ):
        body = client.get(url).content.decode()
        assert re.search(
            r'<time datetime="[^"]+" title="2026-11-14 07:01:00 EST">in 13 days</time>', body
        )
        assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", body)
        assert "Times are shown in America/New_York" in body
