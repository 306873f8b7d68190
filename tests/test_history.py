"""The audit side: read-only history, CSV export, the org page's events, the change log, roles."""

import csv
import io

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tokens import roles, services
from tokens.admin_history import csv_cell
from tokens.models import ApiClient, Integration, Org, TokenEvent

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
