"""The dashboard on the admin index: counts, what needs attention, 24 h outcomes, timeline."""

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.urls import reverse

from tests.conftest import connect_org, make_staff
from tokens import services
from tokens.admin.org import STATUS_COLOURS
from tokens.models import Org, Token

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(integration, provider, frozen_clock):
    """Four connected orgs in different states, one pending and one disabled."""
    orgs = {}
    for slug in ("calm", "expiring", "failing", "lost"):
        orgs[slug] = connect_org(
            Org.objects.create(
                name=f"{slug.title()} <b>Org</b>", slug=slug, integration=integration
            ),
            provider,
        )
    Token.objects.filter(org=orgs["expiring"]).update(
        refresh_expires_at=frozen_clock.current + timedelta(days=3)
    )
    Token.objects.filter(org=orgs["failing"]).update(failure_count=4, last_error_code="http_503")
    Org.objects.filter(pk=orgs["lost"].pk).update(
        status="needs_reconnect", status_reason="invalid_grant: revoked"
    )
    Org.objects.create(name="New", slug="new", integration=integration)
    Org.objects.create(name="Off", slug="off", integration=integration, status="disabled")
    services.token_event_record(
        org=orgs["calm"], kind="refreshed", trigger="schedule", outcome="success"
    )
    services.token_event_record(
        org=orgs["failing"], kind="refresh_failed", trigger="schedule", outcome="failure"
    )
    return orgs


def dashboard_html(client) -> str:
    body = client.get(reverse("admin:index")).content.decode()
    match = re.search(r'<div class="dashboard" id="dashboard">.*?</svg>', body, re.S)
    assert match, "no dashboard on the index page"
    return match.group(0)


def test_dashboard_counts_orgs_by_status_and_lists_what_needs_attention(client, fleet):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    html = dashboard_html(client)
    counts = dict(re.findall(r'status-(\w+)".*?<span class="figure">(\d+)</span>', html, re.S))
    assert counts == {"pending": "1", "connected": "3", "needs_reconnect": "1", "disabled": "1"}
    assert re.search(r'class="needs-reconnect">.*Lost &lt;b&gt;Org.*invalid_grant: revoked', html)
    assert re.search(r'class="refresh-expiring">.*Expiring &lt;b&gt;Org', html)
    assert re.search(r'class="failing">.*Failing &lt;b&gt;Org.*4 failed refreshes.*http_503', html)
    assert "Calm &lt;b&gt;Org</a>" not in html.split("Expiry timeline")[0]
    outcomes = dict(re.findall(r'outcome-(\w+)".*?<span class="figure">(\d+)</span>', html, re.S))
    assert outcomes == {"success": "1", "failure": "1", "warning": "0"}


def test_timeline_is_inline_svg_with_one_row_per_connected_org(client, fleet):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    html = dashboard_html(client)
    svg = html[html.index("<svg") :]
    root = ElementTree.fromstring(svg)  # noqa: S314  (our own page; well-formed, names escaped)
    rows = root.findall("{http://www.w3.org/2000/svg}g")
    assert sorted(int(row.get("data-org")) for row in rows) == sorted(
        fleet[slug].pk for slug in ("calm", "expiring", "failing")
    )
    assert "<b>" not in svg and "Calm &lt;b&gt;Org" in svg
    assert "refresh token expires" in svg and "next refresh" in svg
    page = client.get(reverse("admin:index")).content.decode()
    assert not re.search(r'<script[^>]+src="https?://', page)  # offline: no CDN


def test_dashboard_is_not_shown_to_staff_who_may_not_see_orgs(client, fleet):
    client.force_login(make_staff("someone"))
    assert 'id="dashboard"' not in client.get(reverse("admin:index")).content.decode()


def test_dashboard_with_no_orgs_says_so(client, db):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    html = dashboard_html(client)
    assert "Nothing needs you now." in html
    assert "No connected org yet." in html


def test_pending_orgs_are_listed_under_needs_attention_as_not_connected_yet(client, fleet):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    html = dashboard_html(client)
    attention = html.split("Needs attention")[1].split("Refreshes in the last 24 hours")[0]
    assert re.search(r'class="pending"><a href="[^"]+">New</a> is not connected yet', attention)
    assert "Off</a>" not in attention  # disabled on purpose: nothing to do


def test_status_cards_carry_the_colours_of_the_status_badges(client, fleet):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    html = dashboard_html(client)
    for status, colour in STATUS_COLOURS.items():
        assert re.search(
            rf'class="card org-status-card status-{status}" style="[^"]*{colour}', html
        )


def test_timeline_fills_its_column_and_draws_in_the_theme_colours(client, fleet):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    page = client.get(reverse("admin:index")).content.decode()
    svg = page[page.index("<svg xmlns") :]
    svg = svg[: svg.index(">") + 1]
    assert 'width="100%"' in svg
    assert "svg.expiry-timeline text { fill: var(--body-fg); }" in page
