"""Disconnect: revoke at the provider when it can, wipe the tokens locally in any case."""

from datetime import timedelta

import pytest
from django.urls import reverse

from tests.conftest import connect_org, store_under_lost_key
from tokens import oauth, services
from tokens.demo.provider import RFC7009_REVOKE_PATH
from tokens.exceptions import (
    DisconnectInProgress,
    InvalidGrant,
    OrgNotConnected,
    OrgReconnected,
    RefreshInProgress,
)
from tokens.models import Org, Token, TokenEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@e.com", "pw"))
    return client


def test_disconnect_revokes_at_the_provider_and_wipes_the_tokens(connected_org, provider):
    access = Token.objects.get(org=connected_org).access_token
    result = services.org_disconnect(org_id=connected_org.pk)
    org = Org.objects.get(pk=connected_org.pk)
    assert result.revoked is True
    assert [c["outcome"] for c in provider.revoke_calls] == ["ok"]
    assert not provider.is_access_token_valid(access)
    assert not Token.objects.filter(org=org).exists()
    assert org.status == Org.Status.PENDING
    event = TokenEvent.objects.filter(org=org).first()
    assert (event.kind, event.outcome) == ("disconnected", "success")
    assert "revoked" in event.message


def test_disconnect_with_the_provider_down_still_wipes_locally_and_says_so(connected_org, provider):
    provider.stop()  # connection refused
    result = services.org_disconnect(org_id=connected_org.pk)
    assert result.revoked is False
    assert "did not confirm" in result.message
    assert not Token.objects.filter(org=connected_org).exists()
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.PENDING
    event = TokenEvent.objects.filter(org=connected_org).first()
    assert (event.kind, event.outcome) == ("disconnected", "warning")


def test_disconnect_when_the_provider_refuses_still_wipes_locally(connected_org, provider):
    connected_org.integration.revocation_url = provider.base_url + "/v1/no-such-endpoint"
    connected_org.integration.save()
    result = services.org_disconnect(org_id=connected_org.pk)
    assert result.revoked is False
    assert "HTTP 404" in result.message
    assert not Token.objects.filter(org=connected_org).exists()


def test_disconnect_without_a_revocation_endpoint(connected_org, provider):
    connected_org.integration.revocation_url = ""
    connected_org.integration.save()
    result = services.org_disconnect(org_id=connected_org.pk)
    assert (result.revoked, provider.revoke_calls) == (False, [])
    assert "no revocation endpoint" in result.message
    assert not Token.objects.filter(org=connected_org).exists()


def test_generic_provider_is_revoked_the_rfc_7009_way(connected_org, provider):
    integration = connected_org.integration
    integration.provider = "generic"
    integration.revocation_url = provider.base_url + RFC7009_REVOKE_PATH
    integration.save()
    refresh_token = Token.objects.get(org=connected_org).refresh_token
    assert services.org_disconnect(org_id=connected_org.pk).revoked is True
    assert provider.revoke_calls[-1] == {
        **provider.revoke_calls[-1],
        "endpoint": RFC7009_REVOKE_PATH,
        "outcome": "ok",
    }
    with pytest.raises(InvalidGrant):  # the grant is gone at the provider
        oauth.refresh(integration.client_config(), refresh_token=refresh_token)
    assert not Token.objects.filter(org=connected_org).exists()


def test_disconnecting_an_org_without_tokens_is_refused(org):
    with pytest.raises(OrgNotConnected, match="nothing to disconnect"):
        services.org_disconnect(org_id=org.pk)
    assert not TokenEvent.objects.exists()


def test_disconnected_org_gets_409_from_the_api(client, connected_org):
    _, key = services.api_client_create(name="flows", orgs=[connected_org])
    services.org_disconnect(org_id=connected_org.pk)
    response = client.get("/api/v1/orgs/acme/token", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert (response.status_code, response.json()["error"]) == (409, "pending")


def test_disconnect_button_asks_first_then_disconnects(superuser_client, connected_org, provider):
    url = reverse("admin:tokens_org_disconnect", args=[connected_org.pk])
    confirmation = superuser_client.get(url)
    assert confirmation.status_code == 200
    assert b"Yes, disconnect" in confirmation.content
    assert Token.objects.filter(org=connected_org).exists()  # a GET changes nothing
    response = superuser_client.post(url, {"confirmed": "yes"}, follow=True)
    assert "The provider revoked the grant." in response.content.decode()
    assert not Token.objects.filter(org=connected_org).exists()
    event = TokenEvent.objects.filter(org=connected_org).first()
    assert (event.trigger, event.actor.username) == ("manual", "root")


def test_disconnect_action_confirms_then_disconnects_each(superuser_client, connected_org):
    changelist = reverse("admin:tokens_org_changelist")
    data = {"action": "disconnect_selected", "_selected_action": [connected_org.pk]}
    first = superuser_client.post(changelist, data)
    assert b"Yes, disconnect" in first.content
    assert Token.objects.filter(org=connected_org).exists()
    superuser_client.post(changelist, {**data, "confirmed": "yes"})
    assert not Token.objects.filter(org=connected_org).exists()


def test_disconnect_waits_for_a_refresh_in_flight(frozen_clock, connected_org, provider):
    """A refresh at the provider may rotate the tokens: revoking the old ones would leave
    the new grant alive there. Disconnect refuses until the refresh is over."""
    Token.objects.filter(org=connected_org).update(
        refresh_claim="x", refreshing_until=frozen_clock.current + timedelta(seconds=30)
    )
    with pytest.raises(RefreshInProgress, match="in flight"):
        services.org_disconnect(org_id=connected_org.pk)
    assert provider.revoke_calls == []
    assert Token.objects.filter(org=connected_org).exists()
    assert not TokenEvent.objects.filter(kind="disconnected").exists()


def test_disconnect_revokes_at_the_integration_that_issued_the_tokens(
    connected_org, provider, other_integration, other_provider
):
    Org.objects.filter(pk=connected_org.pk).update(integration=other_integration)  # past save()
    services.org_disconnect(org_id=connected_org.pk)
    assert [c["outcome"] for c in provider.revoke_calls] == ["ok"]
    assert other_provider.revoke_calls == []


def hold_for_disconnect(org: Org, clock) -> None:
    """Put a disconnect's claim on the org's token, as one at the provider holds it."""
    Token.objects.filter(org=org).update(
        refresh_claim="disconnect", refreshing_until=clock.current + timedelta(seconds=30)
    )


def test_a_second_disconnect_while_one_is_at_the_provider_is_refused_as_such(
    frozen_clock, connected_org, provider
):
    hold_for_disconnect(connected_org, frozen_clock)
    with pytest.raises(DisconnectInProgress, match="being disconnected already"):
        services.org_disconnect(org_id=connected_org.pk)
    assert provider.revoke_calls == []
    assert Token.objects.filter(org=connected_org).exists()


def test_a_refresh_during_a_disconnect_leaves_and_says_why(frozen_clock, connected_org, provider):
    hold_for_disconnect(connected_org, frozen_clock)
    provider.reset_records()
    result = services.token_refresh(
        org_id=connected_org.pk, trigger=TokenEvent.Trigger.MANUAL, force=True
    )
    assert result.outcome == services.RefreshOutcome.IN_PROGRESS
    assert result.message == "A disconnect is in progress."
    assert provider.token_calls == []


def test_disconnect_keeps_the_tokens_of_a_reconnect_made_during_the_revocation(
    connected_org, provider, monkeypatch
):
    revoke = oauth.revoke

    def revoke_while_reconnecting(*args, **kwargs):
        connect_org(connected_org, provider)  # the admin signed in again meanwhile
        return revoke(*args, **kwargs)

    monkeypatch.setattr(oauth, "revoke", revoke_while_reconnecting)
    with pytest.raises(OrgReconnected, match="reconnected meanwhile"):
        services.org_disconnect(org_id=connected_org.pk)
    token = Token.objects.get(org=connected_org)
    assert token.version == 2
    assert provider.is_access_token_valid(token.access_token)
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.CONNECTED
    assert not TokenEvent.objects.filter(kind="disconnected").exists()


def test_disconnecting_tokens_no_key_decrypts_wipes_them_without_revoking(
    superuser_client, connected_org, provider
):
    token = Token.objects.get(org=connected_org)
    store_under_lost_key(token, "access_token", "lost-access")
    store_under_lost_key(token, "refresh_token", "lost-refresh")
    url = reverse("admin:tokens_org_disconnect", args=[connected_org.pk])
    response = superuser_client.post(url, follow=True)
    assert response.status_code == 200
    assert "nothing was revoked at the provider" in response.content.decode()
    assert provider.revoke_calls == []
    assert not Token.objects.filter(org=connected_org).exists()
    assert Org.objects.get(pk=connected_org.pk).status == Org.Status.PENDING
    event = TokenEvent.objects.get(kind="disconnected")
    assert event.outcome == "warning"
    assert "No key in FIELD_ENCRYPTION_KEYS decrypts" in event.message


def test_disconnect_clears_connected_at_and_by(connected_org, django_user_model):
    Org.objects.filter(pk=connected_org.pk).update(
        connected_by=django_user_model.objects.create_user("someone")
    )
    services.org_disconnect(org_id=connected_org.pk)
    connected_org.refresh_from_db()
    assert (connected_org.status, connected_org.connected_at, connected_org.connected_by) == (
        "pending",
        None,
        None,
    )
