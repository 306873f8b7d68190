"""Admin pages: every page loads, secrets are write-only, token values never shown."""

import pytest
from django.urls import reverse

from tests.conftest import make_staff
from tests.test_connect import connect
from tokens.models import Integration, Org, Token, TokenEvent

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
