"""The audit side: read-only history, CSV export, the org page's events, the change log, roles."""

import csv
import io
import json
import re

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tokens import roles, selectors, services
from tokens.admin import history as admin_history
from tokens.admin.history import csv_cell
from tokens.exceptions import ProviderError
from tokens.models import ApiClient, Integration, Org, Token, TokenEvent

pytestmark = pytest.mark.django_db


def staff_in(group_name: str, django_user_model, username: str = "someone"):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    return client


def record(org: Org | None, **fields) -> TokenEvent:
    defaults = {"kind": "refreshed", "trigger": "schedule", "outcome": "success"}
    return services.token_event_record(org=org, **{**defaults, **fields})


def test_every_write_path_to_the_history_is_refused(superuser_client, org):
    event = record(org)
    changelist = reverse("admin:tokens_tokenevent_changelist")
    change = reverse("admin:tokens_tokenevent_change", args=[event.pk])
    delete = reverse("admin:tokens_tokenevent_delete", args=[event.pk])
    bulk_delete = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    refused = [
        superuser_client.get(reverse("admin:tokens_tokenevent_add")),
        superuser_client.post(reverse("admin:tokens_tokenevent_add"), {"kind": "connected"}),
        superuser_client.post(delete, {"post": "yes"}),
        superuser_client.post(changelist, bulk_delete),
    ]
    superuser_client.post(change, {"kind": "connected", "outcome": "failure", "message": "x"})
    assert [r.status_code for r in refused[:3]] == [403, 403, 403]
    event.refresh_from_db()
    assert (event.kind, event.outcome, event.message) == ("refreshed", "success", "")
    assert TokenEvent.objects.count() == 1
    assert b'name="_save"' not in superuser_client.get(change).content


def test_history_filters_and_searches(superuser_client, org, integration):
    other = Org.objects.create(name="Other", slug="other", integration=integration)
    record(org, error_code="e-acme")
    record(other, kind="refresh_failed", outcome="failure", error_code="e-other")
    url = reverse("admin:tokens_tokenevent_changelist")
    by_org = superuser_client.get(url, {"org__id__exact": org.pk}).content.decode()
    by_outcome = superuser_client.get(url, {"outcome__exact": "failure"}).content.decode()
    by_search = superuser_client.get(url, {"q": "other"}).content.decode()
    assert "e-acme" in by_org and "e-other" not in by_org
    assert "e-other" in by_outcome and "e-acme" not in by_outcome
    assert "e-other" in by_search and "e-acme" not in by_search


def test_csv_export_escapes_formulas_and_keeps_odd_characters(superuser_client, integration):
    odd = Org.objects.create(name="=HYPERLINK()", slug="eq-org", integration=integration)
    events = [
        record(odd, message='=cmd|" /C calc"!A0', error_code="+1"),
        record(odd, message="-2+3", error_code="@SUM(1)"),
        record(odd, message='comma, "quote" and\nnewline, ünïcødé'),
    ]
    response = superuser_client.post(
        reverse("admin:tokens_tokenevent_changelist"),
        {"action": "export_csv", "_selected_action": [e.pk for e in events]},
    )
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["message"] for r in rows] == [
        "'=cmd|\" /C calc\"!A0", "'-2+3", 'comma, "quote" and\nnewline, ünïcødé',
    ]  # fmt: skip
    assert [r["error_code"] for r in rows[:2]] == ["'+1", "'@SUM(1)"]
    assert all(not r[key].startswith(("=", "+", "-", "@")) for r in rows for key in r)


@pytest.mark.parametrize(
    ("value", "cell"),
    [("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"),
     ("plain", "plain"), (None, ""), (42, "42")],
)  # fmt: skip
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [("a;=1+1", "a;'=1+1"), ("a|@x", "a|'@x"), ("a,-1", "a,'-1"), ("a\t+1", "a\t'+1"),
     ("a\n=1", "a\n'=1"), ('a; "=1"', "a;' \"=1\""), (" =1", "' =1"), ("\x00=1", "'\x00=1"),
     ("\uff1d1+1", "'\uff1d1+1"), ("a; b - c", "a; b - c"), ("1-2;x@y", "1-2;x@y")],
)  # fmt: skip
def test_csv_cell_neutralises_a_formula_wherever_a_separator_could_start_a_cell(value, cell):
    assert csv_cell(value) == cell


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_csv_export_opens_without_a_formula_cell_whatever_the_separator(
    superuser_client, integration, separator
):
    # A slug is validated by forms only: an import or a shell could store anything.
    evil = Org.objects.create(
        name="Evil", slug='x;=HYPERLINK("http://evil")', integration=integration
    )
    events = [
        record(evil, message="ok;=cmd|' /C calc'!A0;", error_code="a|@SUM(1)"),
        record(evil, message='x\t-2+3\t"; "=1+1"', error_code="\uff1d1+1"),
    ]
    response = superuser_client.post(
        reverse("admin:tokens_tokenevent_changelist"),
        {"action": "export_csv", "_selected_action": [e.pk for e in events]},
    )
    text = b"".join(response.streaming_content).decode()
    assert text.startswith('"created_at","org_slug","kind",')  # every cell quoted
    cells = [cell for row in csv.reader(io.StringIO(text), delimiter=separator) for cell in row]
    assert len(cells) > len(events)
    assert [cell for cell in cells if cell.lstrip(' "').startswith(FORMULA_STARTS)] == []
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["message"] for r in rows] == ["ok;'=cmd|' /C calc'!A0;", 'x\t\'-2+3\t";\' "=1+1"']


def test_org_page_shows_its_latest_events_and_links_to_all(superuser_client, org, integration):
    other = Org.objects.create(name="Other", slug="other", integration=integration)
    for n in range(12):
        record(org, error_code=f"code-{n:02d}")
    record(other, error_code="not-mine")
    page = superuser_client.get(reverse("admin:tokens_org_change", args=[org.pk])).content.decode()
    assert "code-11" in page and "code-02" in page
    assert "code-01" not in page and "not-mine" not in page  # the latest ten only
    assert f"?org__id__exact={org.pk}" in page


def test_change_log_is_visible_to_viewers_and_read_only(client, django_user_model, org):
    LogEntry.objects.log_actions(
        user_id=django_user_model.objects.create_superuser("root", "r@e.com", "pw").pk,
        queryset=[org.integration], action_flag=CHANGE, change_message="Changed client_id.",
    )  # fmt: skip
    client.force_login(staff_in(roles.VIEWERS, django_user_model))
    listing = client.get(reverse("admin:admin_logentry_changelist"))
    entry = LogEntry.objects.get()
    assert listing.status_code == 200
    assert "Changed client_id." in listing.content.decode()
    assert (
        client.post(
            reverse("admin:admin_logentry_delete", args=[entry.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Integration)
    ).exists()


def test_roles_exist_with_their_permissions():
    viewers = set(
        Group.objects.get(name=roles.VIEWERS).permissions.values_list("codename", flat=True)
    )
    operators = set(
        Group.objects.get(name=roles.OPERATORS).permissions.values_list("codename", flat=True)
    )
    assert viewers == {"view_org", "view_tokenevent", "view_tokenservedcount", "view_logentry"}
    assert {"connect_org", "refresh_org", "disconnect_org"} <= operators
    secrets = {"view_integration", "change_integration", "view_apiclient", "add_apiclient"}
    assert not (viewers | operators) & secrets


def test_viewer_sees_orgs_and_history_but_no_buttons_and_gets_403(
    client, django_user_model, connected_org, provider
):
    client.force_login(staff_in(roles.VIEWERS, django_user_model))
    page = client.get(reverse("admin:tokens_org_change", args=[connected_org.pk])).content.decode()
    assert (
        "Refresh now" not in page and "disconnect-link" not in page and "connect-link" not in page
    )
    assert client.get(reverse("admin:tokens_tokenevent_changelist")).status_code == 200
    provider.reset_records()
    assert (
        client.post(reverse("admin:tokens_org_refresh", args=[connected_org.pk])).status_code == 403
    )
    assert (
        client.post(reverse("admin:tokens_org_disconnect", args=[connected_org.pk])).status_code
        == 403
    )
    assert client.get(reverse("tokens:oauth-connect", args=[connected_org.slug])).status_code == 403
    assert client.get(reverse("admin:tokens_integration_changelist")).status_code == 403
    assert client.get(reverse("admin:tokens_apiclient_changelist")).status_code == 403
    assert provider.token_calls == [] and provider.revoke_calls == []
    assert Org.objects.get(pk=connected_org.pk).status == "connected"


def test_operator_sees_the_buttons_but_not_secrets(client, django_user_model, connected_org):
    client.force_login(staff_in(roles.OPERATORS, django_user_model))
    page = client.get(reverse("admin:tokens_org_change", args=[connected_org.pk])).content.decode()
    assert "Refresh now" in page and "disconnect-link" in page and "connect-link" in page
    assert client.get(reverse("admin:tokens_integration_changelist")).status_code == 403
    assert client.get(reverse("admin:tokens_apiclient_add")).status_code == 403
    assert not ApiClient.objects.exists()


# -- the history list at any size ------------------------------------------------------------


def test_the_history_list_never_counts_or_scans_the_whole_history(superuser_client, org):
    for kind in ("connected", "refreshed", "refresh_failed"):
        record(org, kind=kind)
    url = reverse("admin:tokens_tokenevent_changelist")
    for params in ({}, {"kind__exact": "refreshed"}, {"org__id__exact": org.pk}):
        with CaptureQueriesContext(connection) as queries:
            page = superuser_client.get(url, params)
        assert page.status_code == 200
        on_events = [q["sql"] for q in queries if f'FROM "{TokenEvent._meta.db_table}"' in q["sql"]]
        counts = [sql for sql in on_events if "COUNT(" in sql]
        assert counts and all("LIMIT 10001" in sql for sql in counts), counts
        assert not [sql for sql in on_events if "DISTINCT" in sql]
    assert "3 token events" in page.content.decode()


def test_past_the_cap_the_list_says_how_many_it_counted_plus(superuser_client, org, monkeypatch):
    monkeypatch.setattr(admin_history, "HISTORY_COUNT_CAP", 3)
    for n in range(5):
        record(org, error_code=f"code-{n}")
    page = superuser_client.get(reverse("admin:tokens_tokenevent_changelist")).content.decode()
    assert "3+ token events" in page
    assert "Select all 3+ token events" in page
    assert "code-4" in page and "code-0" in page  # one page still shows them all
    searched = superuser_client.get(
        reverse("admin:tokens_tokenevent_changelist"), {"q": "acme"}
    ).content.decode()
    assert "3+ results" in searched


def test_the_org_filter_lists_orgs_from_the_org_table(
    superuser_client, org, integration, monkeypatch
):
    Org.objects.create(name="Quiet Org", slug="quiet", integration=integration)  # no events
    record(org)
    url = reverse("admin:tokens_tokenevent_changelist")
    assert "Quiet Org" in superuser_client.get(url).content.decode()
    monkeypatch.setattr(admin_history, "ORG_FILTER_MAX_CHOICES", 1)
    many = superuser_client.get(url).content.decode()
    chosen = superuser_client.get(url, {"org__id__exact": org.pk}).content.decode()
    assert "Quiet Org" not in many and "Quiet Org" not in chosen
    assert 'title="Acme Contact Center"' in chosen or "Acme Contact Center</a>" in chosen


# -- export ----------------------------------------------------------------------------------


def export(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("export_token_events", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_export_writes_one_json_object_per_event_with_the_documented_fields(
    frozen_clock, connected_org, provider, django_user_model
):
    admin = django_user_model.objects.create_user("auditor-op", password="pw")
    frozen_clock.advance(hours=1)
    services.token_refresh(org_id=connected_org.pk, trigger="manual", actor=admin, force=True)
    frozen_clock.advance(days=2)
    record(connected_org, kind="refresh_failed", outcome="failure", error_code="late")
    rows = export("--since", "2026-11-01", "--until", "2026-11-02T00:00:00Z", "--format", "jsonl")
    assert [list(row) for row in rows] == [list(selectors.EXPORT_FIELDS)] * 2
    connected, refreshed = rows
    assert (connected["kind"], refreshed["kind"]) == ("connected", "refreshed")
    token = Token.objects.get(org=connected_org)
    assert refreshed == refreshed | {
        "org_id": connected_org.pk, "org_slug": "acme", "trigger": "manual",
        "outcome": "success", "actor": "auditor-op", "created_at": "2026-11-01T13:00:00+00:00",
        "access_fingerprint": token.access_fingerprint, "token_version": 2,
        "access_expires_at": token.access_expires_at.isoformat(),
    }  # fmt: skip
    assert [r["error_code"] for r in export("--since", "2026-11-03")] == ["late"]


def test_export_holds_no_secret(frozen_clock, connected_org, provider, tmp_path):
    services.token_refresh(org_id=connected_org.pk, trigger="manual", force=True)
    token = Token.objects.get(org=connected_org)
    target = tmp_path / "history.jsonl"
    call_command("export_token_events", "--since", "2026-01-01", "--output", str(target))
    text = target.read_text()
    assert len(text.splitlines()) == 2
    for secret in (token.access_token, token.refresh_token, provider.client_secret):
        assert secret not in text
    assert token.access_fingerprint in text


def test_export_reads_the_history_in_keyset_batches(org, frozen_clock):
    for n in range(7):
        frozen_clock.advance(seconds=n % 2)  # pairs of events share a timestamp
        record(org, error_code=f"e{n}")
    with CaptureQueriesContext(connection) as queries:
        rows = export("--since", "2026-11-01", "--batch-size", "2")
    selects = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert [r["error_code"] for r in rows] == [f"e{n}" for n in range(7)]
    assert len(selects) == 4  # ceil(7 / 2) batches, each one short query
    assert all("LIMIT 2" in sql for sql in selects)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO date or datetime"),
        (["--since", "2026-02-30"], "--since '2026-02-30' is not an ISO date or datetime"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "--until must be later"),
        (["--since", "2026-11-01", "--until", "13:00"], "--until '13:00' is not an ISO"),
        (["--since", "2026-11-01", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_export_refuses_bad_input(org, args, message):
    record(org)
    with pytest.raises(CommandError, match=message):
        call_command("export_token_events", *args, stdout=io.StringIO())


def test_csv_export_times_have_no_microseconds(superuser_client, org, frozen_clock):
    frozen_clock.current = frozen_clock.current.replace(microsecond=123456)
    event = record(org)
    response = superuser_client.post(
        reverse("admin:tokens_tokenevent_changelist"),
        {"action": "export_csv", "_selected_action": [event.pk]},
    )
    text = b"".join(response.streaming_content).decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["created_at"] == "2026-11-01T12:00:00+00:00"
    assert ".123456" not in text


def test_http_status_is_shown_only_when_there_is_one(superuser_client, org):
    quiet = record(org)
    failed = record(
        org, kind="refresh_failed", outcome="failure", error=ProviderError("down", http_status=503)
    )
    listing = superuser_client.get(reverse("admin:tokens_tokenevent_changelist"))
    cells = re.findall(r'<td class="field-http">([^<]*)</td>', listing.content.decode())
    assert sorted(cells) == ["", "503"]
    page = superuser_client.get(reverse("admin:tokens_tokenevent_change", args=[quiet.pk]))
    assert "Http status" not in page.content.decode()
    page = superuser_client.get(reverse("admin:tokens_tokenevent_change", args=[failed.pk]))
    assert "Http status" in page.content.decode()
    inline = superuser_client.get(reverse("admin:tokens_org_change", args=[org.pk]))
    assert re.findall(r'<td class="field-http">\s*<p>([^<]*)</p>', inline.content.decode()) == [
        "503",
        "",
    ]
