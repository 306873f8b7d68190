"""API clients in the admin and the create_api_client command: a key is shown exactly once."""

import io
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from tokens import apikeys, services
from tokens.models import ApiClient, Org, TokenServedCount

pytestmark = pytest.mark.django_db
KEY = re.compile(r"tc_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def add_client(superuser_client, connected_org, **overrides):
    data = {"name": "flows", "orgs": [connected_org.pk], "allowed_networks": "", "legacy_from": ""}
    data.update(overrides)
    return superuser_client.post(reverse("admin:tokens_apiclient_add"), data)


def api_status(client, key: str) -> int:
    return client.get("/api/v1/orgs/acme/token", HTTP_AUTHORIZATION=f"Bearer {key}").status_code


def test_adding_a_client_shows_its_key_once_and_the_key_works(superuser_client, connected_org):
    response = add_client(superuser_client, connected_org)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = KEY.search(response.content.decode()).group(0)
    api_client = ApiClient.objects.get(name="flows")
    assert api_client.key_prefix == key.split("_")[1]
    assert key not in api_client.key_hash
    assert api_status(superuser_client, key) == 200
    change_page = superuser_client.get(
        reverse("admin:tokens_apiclient_change", args=[api_client.pk])
    ).content.decode()
    assert key not in change_page
    assert f"tc_{api_client.key_prefix}_" in change_page


def test_legacy_headers_need_both_from_and_passphrase(superuser_client, connected_org):
    response = add_client(superuser_client, connected_org, legacy_from="flow")
    assert response.status_code == 200
    assert "Legacy access needs both" in response.content.decode()
    assert not ApiClient.objects.exists()


def test_a_legacy_x_from_another_client_uses_for_the_org_is_refused(
    superuser_client, connected_org
):
    services.api_client_create(
        name="ops", all_orgs=True, legacy_from="flow", legacy_passphrase="phrase-0"
    )
    response = add_client(
        superuser_client, connected_org, legacy_from="flow", legacy_passphrase="phrase-1"
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["legacy_from"] == [
        "API client 'ops' has this X-From and may read one of the same orgs, so /api/token "
        "could not tell the two apart. Choose another X-From."
    ]
    assert not ApiClient.objects.filter(name="flows").exists()
    assert (
        add_client(
            superuser_client, connected_org, legacy_from="flow-2", legacy_passphrase="p"
        ).status_code
        == 200
    )
    assert ApiClient.objects.get(name="flows").legacy_from == "flow-2"


def test_passphrase_is_write_only_and_kept_when_left_blank(superuser_client, connected_org):
    add_client(superuser_client, connected_org, legacy_from="flow", legacy_passphrase="phrase-1")
    api_client = ApiClient.objects.get()
    stored = api_client.legacy_passphrase_hash
    url = reverse("admin:tokens_apiclient_change", args=[api_client.pk])
    assert "phrase-1" not in superuser_client.get(url).content.decode()
    superuser_client.post(url, {"name": "flows", "orgs": [connected_org.pk], "legacy_from": "flow"})
    assert ApiClient.objects.get().legacy_passphrase_hash == stored


def test_create_service_refuses_legacy_headers_given_by_half(connected_org):
    with pytest.raises(ValidationError) as no_phrase:
        services.api_client_create(name="flows", orgs=[connected_org], legacy_from="flow")
    assert no_phrase.value.message_dict == {
        "legacy_passphrase": ["Legacy access needs both X-From and X-API-Phrase."]
    }
    with pytest.raises(ValidationError) as no_from:
        services.api_client_create(name="flows", orgs=[connected_org], legacy_passphrase="p")
    assert list(no_from.value.message_dict) == ["legacy_from"]
    assert not ApiClient.objects.exists()


def test_update_service_changes_the_client_but_not_its_key(connected_org, integration):
    api_client, key = services.api_client_create(
        name="flows", orgs=[connected_org], legacy_from="flow", legacy_passphrase="phrase-1"
    )
    other = Org.objects.create(name="Other", slug="other", integration=integration)
    services.api_client_update(
        client=api_client, name="flows 2", orgs=[other], allowed_networks="10.0.0.0/8",
        legacy_from="flow",
    )  # fmt: skip
    after = ApiClient.objects.get()
    assert (after.name, after.allowed_networks) == ("flows 2", "10.0.0.0/8")
    assert list(after.orgs.all()) == [other]
    assert apikeys.key_matches(key, after.key_hash)
    assert apikeys.passphrase_matches("phrase-1", after.legacy_passphrase_hash)
    services.api_client_update(client=after, name="flows 2", orgs=[other], legacy_from="")
    assert ApiClient.objects.get().legacy_passphrase_hash == ""


def test_update_service_refuses_bad_input_and_changes_nothing(connected_org):
    api_client, _ = services.api_client_create(name="flows", orgs=[connected_org])
    services.api_client_create(
        name="ops", all_orgs=True, legacy_from="flow", legacy_passphrase="phrase-0"
    )
    bad = [
        ({"legacy_passphrase": "p"}, "legacy_from"),
        ({"legacy_from": "flow"}, "legacy_passphrase"),
        ({"legacy_from": "flow", "legacy_passphrase": "p"}, "legacy_from"),  # ops has it
        ({"allowed_networks": "not a network"}, "allowed_networks"),
        ({"name": "ops"}, "name"),
    ]
    for fields, field in bad:
        with pytest.raises(ValidationError) as refused:
            services.api_client_update(
                client=ApiClient.objects.get(pk=api_client.pk),
                **{"name": "flows", "orgs": [connected_org], **fields},
            )
        assert field in refused.value.message_dict
    after = ApiClient.objects.get(pk=api_client.pk)
    assert (after.name, after.legacy_from, after.legacy_passphrase_hash) == ("flows", "", "")


def test_admin_saves_api_clients_through_the_services(superuser_client, connected_org, monkeypatch):
    calls = []

    def spy(service_name: str):
        real = getattr(services, service_name)
        return lambda **fields: calls.append(service_name) or real(**fields)

    for service_name in ("api_client_create", "api_client_update"):
        monkeypatch.setattr(services, service_name, spy(service_name))
    add_client(superuser_client, connected_org, allowed_networks="10.0.0.0/8")
    api_client = ApiClient.objects.get()
    url = reverse("admin:tokens_apiclient_change", args=[api_client.pk])
    superuser_client.post(url, {"name": "renamed", "orgs": [], "all_orgs": "on"})
    assert calls == ["api_client_create", "api_client_update"]
    after = ApiClient.objects.get()
    assert (after.name, after.all_orgs, list(after.orgs.all())) == ("renamed", True, [])
    assert after.key_prefix == api_client.key_prefix
    assert LogEntry.objects.filter(object_id=str(api_client.pk)).count() == 2


def test_admin_change_form_shows_the_services_errors(superuser_client, connected_org):
    api_client, _ = services.api_client_create(name="flows", orgs=[connected_org])
    url = reverse("admin:tokens_apiclient_change", args=[api_client.pk])
    response = superuser_client.post(
        url, {"name": "flows", "orgs": [connected_org.pk], "legacy_passphrase": "p"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["legacy_from"] == [
        "Legacy access needs both X-From and X-API-Phrase."
    ]
    assert ApiClient.objects.get().legacy_passphrase_hash == ""


def test_revoke_action_asks_first_then_stops_the_key_and_is_logged(superuser_client, connected_org):
    _, key = services.api_client_create(name="flows", orgs=[connected_org])
    api_client = ApiClient.objects.get()
    selected = {"action": "revoke_selected", "_selected_action": [api_client.pk]}
    url = reverse("admin:tokens_apiclient_changelist")
    asked = superuser_client.post(url, selected)
    assert 'id="confirm-revoke"' in asked.content.decode()
    assert api_status(superuser_client, key) == 200  # nothing revoked yet
    response = superuser_client.post(url, {**selected, "confirmed": "yes"}, follow=True)
    assert "Revoked 1 API client key." in response.content.decode()
    assert api_status(superuser_client, key) == 401
    assert LogEntry.objects.filter(object_id=str(api_client.pk)).exists()


def test_revoke_page_asks_on_get_and_revokes_on_post(superuser_client, connected_org):
    _, key = services.api_client_create(name="flows", orgs=[connected_org])
    api_client = ApiClient.objects.get()
    change_page = superuser_client.get(
        reverse("admin:tokens_apiclient_change", args=[api_client.pk])
    ).content.decode()
    url = reverse("admin:tokens_apiclient_revoke", args=[api_client.pk])
    assert f'href="{url}"' in change_page
    page = superuser_client.get(url).content.decode()
    assert 'id="confirm-revoke"' in page and "flows" in page
    assert ApiClient.objects.get().revoked_at is None
    assert api_status(superuser_client, key) == 200
    superuser_client.post(url, {"confirmed": "yes"})
    assert ApiClient.objects.get().revoked_at is not None
    assert api_status(superuser_client, key) == 401
    assert LogEntry.objects.filter(change_message="Revoked the API key.").count() == 1


def test_key_page_has_copy_buttons_and_a_curl_line_for_a_readable_org(
    superuser_client, connected_org, settings
):
    settings.CONSOLE_BASE_URL = "https://console.example.com"
    body = add_client(superuser_client, connected_org).content.decode()
    key = KEY.search(body).group(0)
    curl = f'curl -H "Authorization: Bearer {key}" https://console.example.com/api/v1/orgs/'
    assert f"{curl}{connected_org.slug}/token" in body
    assert body.count('class="button copy-button"') == 2


def test_api_client_list_filters_by_revoked_yes_or_no(superuser_client, connected_org):
    services.api_client_create(name="kept", orgs=[connected_org])
    services.api_client_create(name="gone", orgs=[connected_org])
    services.api_client_revoke(client=ApiClient.objects.get(name="gone"))
    url = reverse("admin:tokens_apiclient_changelist")
    revoked = superuser_client.get(url, {"revoked": "yes"}).context["cl"].result_list
    active = superuser_client.get(url, {"revoked": "no"}).context["cl"].result_list
    assert [c.name for c in revoked] == ["gone"] and [c.name for c in active] == ["kept"]


def test_served_counts_are_shown_read_only(superuser_client, connected_org):
    _, key = services.api_client_create(name="flows", orgs=[connected_org])
    for _ in range(3):
        api_status(superuser_client, key)
    services.served_flush()
    listing = superuser_client.get(reverse("admin:tokens_tokenservedcount_changelist"))
    api_client = ApiClient.objects.get()
    detail = superuser_client.get(reverse("admin:tokens_apiclient_change", args=[api_client.pk]))
    assert listing.status_code == detail.status_code == 200
    assert TokenServedCount.objects.get().count == 3
    assert ">3</a>" in detail.content.decode()
    org_page = superuser_client.get(reverse("admin:tokens_org_change", args=[connected_org.pk]))
    assert f'?org__id__exact={connected_org.pk}">3</a>' in org_page.content.decode()
    assert superuser_client.get(reverse("admin:tokens_tokenservedcount_add")).status_code == 403


def test_staff_without_permission_cannot_see_api_clients(client, connected_org, django_user_model):
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:tokens_apiclient_changelist")).status_code == 403
    assert client.get(reverse("admin:tokens_apiclient_add")).status_code == 403


def test_create_api_client_command_prints_a_working_key(client, connected_org):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_client", "flows", "--org", "acme", "--allow-cidr", "127.0.0.0/8",
        stdout=out, stderr=err,
    )  # fmt: skip
    key = out.getvalue().strip()
    assert KEY.fullmatch(key)
    assert key not in err.getvalue()
    assert "shown only this once" in err.getvalue()
    assert api_status(client, key) == 200
    assert ApiClient.objects.get().allowed_networks == "127.0.0.0/8"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flows", "--org", "nope"], "No org with slug: nope"),
        (["flows"], "at least one --org"),
        (["flows", "--org", "acme", "--allow-cidr", "10.0.0.0/33"], "is not a network"),
        (["flows", "--org", "acme", "--allow-cidr", "not-an-ip"], "is not a network"),
    ],
)
def test_create_api_client_command_refuses_bad_input(connected_org, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_client", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiClient.objects.exists()


def test_create_api_client_command_refuses_a_duplicate_name(connected_org):
    services.api_client_create(name="flows", orgs=[connected_org])
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_client", "flows", "--all-orgs", stdout=io.StringIO())
    assert ApiClient.objects.count() == 1


def test_create_api_client_command_reads_the_legacy_passphrase_from_stdin(
    client, connected_org, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO("a passphrase\n"))
    call_command(
        "create_api_client", "sample", "--org", "acme", "--legacy-from", "flow",
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    response = client.get(
        "/api/token",
        HTTP_X_ORGANIZATION_ID=connected_org.provider_org_id,
        HTTP_X_FROM="flow",
        HTTP_X_API_PHRASE="a passphrase",
    )
    assert response.status_code == 200
