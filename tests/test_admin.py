"""Admin pages: every page loads, secrets are write-only, token values never shown."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.conftest import connect_org, make_staff, store_under_lost_key
from tests.test_connect import connect
from tokens import roles, services
from tokens.models import Integration, Org, Token, TokenEvent, TokenServedCount

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_every_admin_page_loads_and_shows_no_secret(superuser_client, org, provider):
    connect(superuser_client, org)
    token = Token.objects.get(org=org)
    event = TokenEvent.objects.get(org=org)
    urls = [
        reverse("admin:index"),
        reverse("admin:tokens_integration_changelist"),
        reverse("admin:tokens_integration_add"),
        reverse("admin:tokens_integration_change", args=[org.integration.pk]),
        reverse("admin:tokens_org_changelist"),
        reverse("admin:tokens_org_add"),
        reverse("admin:tokens_org_change", args=[org.pk]),
        reverse("admin:tokens_tokenevent_changelist"),
        reverse("admin:tokens_tokenevent_change", args=[event.pk]),
    ]
    for url in urls:
        response = superuser_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for secret in (token.access_token, token.refresh_token, provider.client_secret):
            assert secret not in body, url
    org_page = superuser_client.get(reverse("admin:tokens_org_change", args=[org.pk])).content
    assert token.access_fingerprint.encode() in org_page
    assert b"Reconnect" in org_page
    assert b"Connected" in org_page


def test_integration_page_shows_the_redirect_uri_to_register(superuser_client, integration):
    page = superuser_client.get(
        reverse("admin:tokens_integration_change", args=[integration.pk])
    ).content.decode()
    assert "http://testserver/oauth/callback/" in page


def integration_form(**overrides: str) -> dict[str, str]:
    return {
        "name": "Webex prod",
        "provider": "webex",
        "client_id": "C123",
        "client_secret": "first-secret-value",
        "token_auth_method": "client_secret_post",
        "scopes": "",
        "authorize_url": "",
        "token_url": "",
        "userinfo_url": "",
        "revocation_url": "",
        **overrides,
    }


def test_webex_preset_fills_blank_urls_and_scopes(superuser_client):
    response = superuser_client.post(reverse("admin:tokens_integration_add"), integration_form())
    assert response.status_code == 302
    created = Integration.objects.get(name="Webex prod")
    assert created.token_url == "https://webexapis.com/v1/access_token"
    assert "cjp:config_read" in created.scopes
    assert created.client_secret == "first-secret-value"


def test_blank_secret_keeps_the_stored_one_and_a_new_one_replaces_it(superuser_client):
    superuser_client.post(reverse("admin:tokens_integration_add"), integration_form())
    created = Integration.objects.get(name="Webex prod")
    url = reverse("admin:tokens_integration_change", args=[created.pk])
    page = superuser_client.get(url).content.decode()
    assert "first-secret-value" not in page
    response = superuser_client.post(url, integration_form(client_secret="", client_id="C999"))
    assert response.status_code == 302
    created.refresh_from_db()
    assert (created.client_id, created.client_secret) == ("C999", "first-secret-value")
    superuser_client.post(url, integration_form(client_secret="second-secret"))
    created.refresh_from_db()
    assert created.client_secret == "second-secret"


def test_production_refuses_to_save_a_plain_http_provider_url(superuser_client, settings):
    settings.PRODUCTION = True
    url = reverse("admin:tokens_integration_add")
    response = superuser_client.post(
        url, integration_form(token_url="http://provider.example.com/v1/access_token")
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["token_url"]
    assert "Production refuses plain http to another machine" in errors["token_url"][0]
    assert not Integration.objects.exists()
    # http to this machine (a local proxy, the fake provider) stays allowed.
    loopback = integration_form(
        authorize_url="http://127.0.0.1:8765/v1/authorize",
        token_url="http://localhost:8765/v1/access_token",
    )
    assert superuser_client.post(url, loopback).status_code == 302


def test_plain_http_provider_urls_are_refused_by_the_model_in_production(settings, integration):
    settings.PRODUCTION = True
    integration.userinfo_url = "http://203.0.113.9/v1/people/me"
    integration.revocation_url = "http://[::1]:9/revoke"  # loopback: allowed
    with pytest.raises(ValidationError) as refused:
        integration.full_clean()
    assert list(refused.value.message_dict) == ["userinfo_url"]


def test_new_integration_needs_a_secret(superuser_client):
    response = superuser_client.post(
        reverse("admin:tokens_integration_add"), integration_form(client_secret="")
    )
    assert response.status_code == 200
    assert b"A client secret is required" in response.content
    assert not Integration.objects.exists()


def test_generic_integration_needs_its_urls(superuser_client):
    response = superuser_client.post(
        reverse("admin:tokens_integration_add"), integration_form(provider="generic")
    )
    assert response.status_code == 200
    assert b"has no default: enter the URL" in response.content
    assert not Integration.objects.exists()


def test_connect_button_only_for_users_who_may_connect(client, org):
    page = reverse("admin:tokens_org_change", args=[org.pk])
    client.force_login(make_staff("viewer", "tokens.view_org"))
    assert b"connect-link" not in client.get(page).content
    client.force_login(make_staff("connector", "tokens.view_org", "tokens.connect_org"))
    body = client.get(page).content.decode()
    assert reverse("tokens:oauth-connect", args=[org.slug]) in body
    assert ">Connect<" in body


def test_token_history_is_read_only_even_for_superusers(superuser_client, org, provider):
    connect(superuser_client, org)
    event = TokenEvent.objects.get(org=org)
    assert superuser_client.get(reverse("admin:tokens_tokenevent_add")).status_code == 403
    delete_url = reverse("admin:tokens_tokenevent_delete", args=[event.pk])
    assert superuser_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse("admin:tokens_tokenevent_change", args=[event.pk])
    superuser_client.post(change_url, {"kind": "refreshed", "outcome": "failure"})
    event.refresh_from_db()
    assert (event.kind, event.outcome) == ("connected", "success")
    assert TokenEvent.objects.count() == 1


def test_a_provider_org_id_bound_to_another_org_is_refused(superuser_client, connected_org):
    twin = Org.objects.create(
        name="Acme again", slug="acme-2", integration=connected_org.integration
    )
    url = reverse("admin:tokens_org_change", args=[twin.pk])
    form = {
        "name": twin.name,
        "slug": twin.slug,
        "integration": twin.integration_id,
        "provider_org_id": connected_org.provider_org_id,  # typed by an operator
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
    }
    response = superuser_client.post(url, form)
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["provider_org_id"] == [
        f"Provider org {connected_org.provider_org_id} is already bound to org 'acme' "
        "(connected) of this integration. Use a different provider org, or first clear the "
        "provider org id of 'acme' (or delete it)."
    ]
    assert Org.objects.get(pk=twin.pk).provider_org_id == ""
    form["provider_org_id"] = "00000000-0000-4000-8000-0000000000aa"  # a free one is kept
    assert superuser_client.post(url, form).status_code == 302
    assert Org.objects.get(pk=twin.pk).provider_org_id == form["provider_org_id"]


def test_org_list_shows_status_badges(superuser_client, org):
    Org.objects.create(name="Beta", slug="beta", integration=org.integration, status="disabled")
    body = superuser_client.get(reverse("admin:tokens_org_changelist")).content.decode()
    assert "org-status-pending" in body
    assert "org-status-disabled" in body


def operator_in_role(django_user_model):
    """A staff user in the Token operators group (tokens/roles.py)."""
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=roles.OPERATORS))
    return user


def org_change_data(client, org: Org, **changes: object) -> dict:
    """The org's change form as the page fills it in, with `changes` typed over it."""
    page = client.get(reverse("admin:tokens_org_change", args=[org.pk]))
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(k): v for k, v in management.initial.items()})
    return {**data, **changes}


def test_operator_cannot_move_a_connected_org_to_another_integration(
    client, django_user_model, connected_org, provider, other_integration, other_provider
):
    client.force_login(operator_in_role(django_user_model))
    url = reverse("admin:tokens_org_change", args=[connected_org.pk])
    page = client.get(url).content.decode()
    assert 'name="integration"' not in page  # shown read-only
    assert "disconnect it to move it" in page

    data = org_change_data(client, connected_org, name="Acme CC", integration=other_integration.pk)
    assert client.post(url, data).status_code == 302
    org = Org.objects.get(pk=connected_org.pk)
    assert (org.name, org.integration_id) == ("Acme CC", connected_org.integration_id)

    provider.reset_records()
    client.post(reverse("admin:tokens_org_refresh", args=[org.pk]))
    assert other_provider.token_calls == []  # neither the refresh token nor a secret went there
    assert [call["outcome"] for call in provider.token_calls] == ["ok"]


def test_operator_moves_an_org_to_another_integration_after_disconnecting_it(
    client, django_user_model, connected_org, provider, other_integration
):
    client.force_login(operator_in_role(django_user_model))
    url = reverse("admin:tokens_org_change", args=[connected_org.pk])
    assert 'name="integration"' not in client.get(url).content.decode()
    disconnect = reverse("admin:tokens_org_disconnect", args=[connected_org.pk])
    client.post(disconnect, {"confirmed": "yes"})
    assert not Token.objects.filter(org=connected_org).exists()
    assert 'name="integration"' in client.get(url).content.decode()
    data = org_change_data(client, connected_org, integration=other_integration.pk)
    assert client.post(url, data).status_code == 302
    assert Org.objects.get(pk=connected_org.pk).integration_id == other_integration.pk


@pytest.fixture
def lost_values(superuser_client, org, provider) -> dict[str, object]:
    """A connected org whose tokens, and an integration (with a pending org) whose client
    secret, were encrypted with a key no setting holds; beside them a healthy org."""
    connect(superuser_client, org)
    token = Token.objects.get(org=org)
    healthy = connect_org(
        Org.objects.create(name="Healthy", slug="healthy", integration=org.integration), provider
    )
    lost_integration = Integration.objects.create(
        name="Lost", provider="generic", client_id="cid", client_secret="x",
        authorize_url="https://127.0.0.1:9/a", token_url="https://127.0.0.1:9/t",
    )  # fmt: skip
    lost_org = Org.objects.create(name="Lost org", slug="lost-org", integration=lost_integration)
    store_under_lost_key(token, "access_token", "lost-access-token")
    store_under_lost_key(token, "refresh_token", "lost-refresh-token")
    store_under_lost_key(lost_integration, "client_secret", "lost-client-secret")
    return {"org": org, "healthy": healthy, "integration": lost_integration, "lost_org": lost_org}


def test_pages_load_when_no_key_decrypts_some_stored_secrets(superuser_client, lost_values):
    org, healthy = lost_values["org"], lost_values["healthy"]
    integration = lost_values["integration"]
    urls = [
        reverse("admin:index"),
        reverse("admin:tokens_integration_changelist"),
        reverse("admin:tokens_integration_change", args=[integration.pk]),
        reverse("admin:tokens_org_changelist"),
        reverse("admin:tokens_org_add"),
        reverse("admin:tokens_org_change", args=[org.pk]),
        reverse("admin:tokens_org_change", args=[healthy.pk]),
        reverse("admin:tokens_org_change", args=[lost_values["lost_org"].pk]),
        reverse("admin:tokens_org_delete", args=[org.pk]),
        reverse("admin:tokens_integration_delete", args=[integration.pk]),
    ]
    for url in urls:
        response = superuser_client.get(url)
        assert response.status_code == 200, url
        for secret in ("lost-access-token", "lost-refresh-token", "lost-client-secret"):
            assert secret not in response.content.decode(), url
    org_page = superuser_client.get(reverse("admin:tokens_org_change", args=[org.pk]))
    assert Token.objects.get(org=org).access_fingerprint in org_page.content.decode()


def test_orgs_and_integrations_no_key_decrypts_can_be_deleted(superuser_client, lost_values):
    org, integration = lost_values["org"], lost_values["integration"]
    for url in (
        reverse("admin:tokens_org_delete", args=[org.pk]),
        reverse("admin:tokens_org_delete", args=[lost_values["lost_org"].pk]),
        reverse("admin:tokens_integration_delete", args=[integration.pk]),
    ):
        assert superuser_client.post(url, {"post": "yes"}).status_code == 302, url
    assert list(Org.objects.values_list("slug", flat=True)) == ["healthy"]
    assert not Token.objects.filter(org_id=org.pk).exists()
    assert not Integration.objects.filter(pk=integration.pk).exists()
    assert TokenEvent.objects.filter(org_slug=org.slug).exists()  # the history stays


def test_an_integration_secret_no_key_decrypts_must_be_entered_again(superuser_client, lost_values):
    integration = lost_values["integration"]
    url = reverse("admin:tokens_integration_change", args=[integration.pk])
    form = integration_form(
        name="Lost", provider="generic", client_secret="",
        authorize_url="https://127.0.0.1:9/a", token_url="https://127.0.0.1:9/t",
    )  # fmt: skip
    response = superuser_client.post(url, form)
    assert response.status_code == 200
    assert b"No key in FIELD_ENCRYPTION_KEYS decrypts the stored client secret" in response.content
    response = superuser_client.post(url, {**form, "client_secret": "entered-again"})
    assert response.status_code == 302
    assert Integration.objects.get(pk=integration.pk).client_secret == "entered-again"


def test_admins_are_registered_in_the_admin_package_init_and_nowhere_else():
    import re
    from pathlib import Path

    import tokens.admin

    package = Path(tokens.admin.__file__).parent
    registers = re.compile(r"(@admin\.register\(|\bsite\.register\()")
    registering = [
        path.name
        for path in sorted(package.glob("*.py"))
        if registers.search(path.read_text()) and path.name != "__init__.py"
    ]
    assert registering == []
    from django.contrib import admin

    from tokens.models import ApiClient, Integration, Org, TokenEvent, TokenServedCount

    for model in (Integration, Org, ApiClient, TokenServedCount, TokenEvent):
        assert admin.site.is_registered(model), model


def test_an_org_sharing_its_provider_org_with_another_gets_a_warning(
    superuser_client, connected_org
):
    twin = Org.objects.create(
        name="Acme again", slug="acme-2", integration=connected_org.integration
    )
    # Old data: saved before the model refused a second org on one provider org.
    Org.objects.filter(pk=twin.pk).update(provider_org_id=connected_org.provider_org_id)
    response = superuser_client.get(reverse("admin:tokens_org_change", args=[twin.pk]))
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert len(warnings) == 1
    assert (
        "Org 'acme' (connected) of this integration is bound to the same provider org"
        in (warnings[0])
    )
    alone = superuser_client.get(reverse("admin:tokens_org_change", args=[connected_org.pk]))
    assert "bound to the same provider org" in alone.content.decode()  # acme is told too
    Org.objects.filter(pk=twin.pk).update(provider_org_id="")
    fixed = superuser_client.get(reverse("admin:tokens_org_change", args=[twin.pk]))
    assert "bound to the same provider org" not in fixed.content.decode()


def test_the_add_form_asks_only_for_name_slug_and_integration(superuser_client):
    response = superuser_client.get(reverse("admin:tokens_org_add"))
    assert list(response.context["adminform"].form.fields) == ["name", "slug", "integration"]
    body = response.content.decode()
    assert "fingerprint" not in body and "latest token events" not in body


def test_token_fields_appear_once_the_org_holds_a_token(superuser_client, org, provider):
    url = reverse("admin:tokens_org_change", args=[org.pk])
    assert "access token fingerprint" not in superuser_client.get(url).content.decode().lower()
    connect_org(org, provider)
    assert "access token fingerprint" in superuser_client.get(url).content.decode().lower()


def test_the_token_console_comes_first_and_otp_apps_have_readable_names(superuser_client):
    response = superuser_client.get(reverse("admin:index"))
    apps = [app["app_label"] for app in response.context["app_list"]]
    assert apps[0] == "tokens"
    names = {app["app_label"]: app["name"] for app in response.context["app_list"]}
    assert names["otp_static"] == "Backup codes"
    assert names["otp_totp"] == "Authenticator apps (TOTP)"
    assert "OTP_STATIC" not in response.content.decode()
    sidebar = superuser_client.get(reverse("admin:tokens_org_changelist")).context["available_apps"]
    assert sidebar[0]["app_label"] == "tokens"


def test_counts_and_labels_read_as_english(superuser_client, connected_org):
    TokenServedCount.objects.create(
        org=connected_org,
        client=services.api_client_create(name="flows", orgs=[connected_org])[0],
        hour=connected_org.connected_at.replace(minute=0, second=0, microsecond=0),
        count=3,
    )
    body = superuser_client.get(reverse("admin:tokens_tokenservedcount_changelist")).content
    assert b"1 hourly count of tokens served" in body
    form = superuser_client.get(reverse("admin:tokens_apiclient_add")).content.decode()
    assert "Legacy passphrase (X-API-Phrase header)" in form
