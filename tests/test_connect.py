"""The connect flow end to end: console → fake provider over HTTP → callback → stored tokens."""

import logging
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests.conftest import connect_org, make_staff, store_under_lost_key
from tokens.exceptions import ConnectError
from tokens.models import Org, Token, TokenEvent
from tokens.views import SESSION_KEY

pytestmark = pytest.mark.django_db


def start_connect(client, org):
    """Press Connect (a POST): the console answers with a redirect to the provider."""
    response = client.post(reverse("tokens:oauth-connect", args=[org.slug]))
    assert response.status_code == 302, response
    return response["Location"]


def provider_redirect(authorize_url: str) -> str:
    """The browser at the provider: auto-consent sends it back to the callback."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def follow_callback(client, callback_url: str):
    parts = urlsplit(callback_url)
    assert parts.path == reverse("tokens:oauth-callback")
    return client.get(f"{parts.path}?{parts.query}")


def connect(client, org):
    """Run the whole flow; return the callback's response."""
    return follow_callback(client, provider_redirect(start_connect(client, org)))


def callback_query(callback_url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(callback_url).query).items()}


def messages_of(response) -> list[str]:
    return [str(message) for message in response.wsgi_request._messages]


def snapshot(org: Org) -> tuple:
    """What a failed attempt must leave exactly as it was."""
    org.refresh_from_db()
    token = Token.objects.filter(org=org).first()
    token_state = (
        (token.access_token, token.refresh_token, token.version, token.access_expires_at)
        if token
        else None
    )
    return (org.status, org.provider_org_id, token_state)


def test_connect_end_to_end_stores_encrypted_tokens_and_records_event(
    operator_client, org, provider, operator
):
    response = connect(operator_client, org)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tokens_org_change", args=[org.pk])
    org.refresh_from_db()
    assert org.status == Org.Status.CONNECTED
    assert org.provider_org_id == provider.org_id
    assert org.cluster_id == provider.cluster_id
    assert org.connected_by == operator
    token = org.token
    assert provider.is_access_token_valid(token.access_token)
    assert token.access_token.endswith(f"_{provider.cluster_id}_{provider.org_id}")
    assert token.refresh_token == provider.current_refresh_token_for(token.access_token)
    assert token.version == 1
    assert token.next_refresh_at is not None
    assert token.obtained_at < token.next_refresh_at < token.access_expires_at
    event = TokenEvent.objects.get(org=org)
    assert (event.kind, event.trigger, event.outcome) == ("connected", "callback", "success")
    assert event.actor == operator
    assert event.access_fingerprint == token.access_fingerprint
    assert event.refresh_expires_at == token.refresh_expires_at
    assert any("is connected" in text for text in messages_of(response))
    # The provider saw PKCE S256 and checked the verifier on exchange.
    authorize_call = provider.authorize_calls[-1]
    assert authorize_call["code_challenge_method"] == "S256"
    assert provider.token_calls[-1]["outcome"] == "ok"


def test_connect_and_reconnect_are_recorded_in_the_change_log(
    operator_client, org, provider, operator
):
    connect(operator_client, org)
    connect(operator_client, org)
    entries = LogEntry.objects.filter(object_id=str(org.pk)).order_by("pk")
    assert [(e.user, e.action_flag, e.change_message) for e in entries] == [
        (operator, CHANGE, "Connected (token version 1)."),
        (operator, CHANGE, "Reconnected (token version 2)."),
    ]
    assert entries[0].content_type.model_class() is Org


def test_a_failed_connect_is_not_recorded_in_the_change_log(operator_client, org, provider):
    provider.fail_next("invalid_grant")
    connect(operator_client, org)
    assert not LogEntry.objects.filter(object_id=str(org.pk)).exists()


def test_database_rows_hold_no_token_or_secret_in_clear_text(operator_client, org, provider):
    connect(operator_client, org)
    token = Token.objects.get(org=org)
    secrets = [token.access_token, token.refresh_token, provider.client_secret]
    with connection.cursor() as cursor:
        dumped = []
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names from Django)
            dumped.extend(str(row) for row in cursor.fetchall())
    text = "\n".join(dumped)
    for secret in secrets:
        assert secret not in text
    # Fingerprints are a prefix of the hash, not of the token.
    assert token.access_fingerprint not in token.access_token


def test_reconnect_replaces_tokens_and_bumps_the_version(operator_client, org, provider):
    connect(operator_client, org)
    first = Token.objects.get(org=org)
    response = connect(operator_client, org)
    second = Token.objects.get(org=org)
    assert response.status_code == 302
    assert second.pk == first.pk
    assert second.version == 2
    assert second.access_token != first.access_token
    assert second.access_fingerprint != first.access_fingerprint
    assert TokenEvent.objects.filter(org=org, kind="connected").count() == 2


def test_client_secret_basic_integration_connects(operator_client, org, provider):
    org.integration.token_auth_method = "client_secret_basic"
    org.integration.save()
    connect(operator_client, org)
    org.refresh_from_db()
    assert org.status == Org.Status.CONNECTED
    assert provider.token_calls[-1]["auth_method"] == "client_secret_basic"


def test_callback_without_state_is_400_and_changes_nothing(operator_client, org, provider):
    before = snapshot(org)
    response = operator_client.get(reverse("tokens:oauth-callback") + "?code=abc")
    assert response.status_code == 400
    assert b"no state" in response.content
    assert snapshot(org) == before
    assert provider.token_calls == []


def test_forged_state_is_400_and_the_code_is_never_exchanged(operator_client, org, provider):
    callback = provider_redirect(start_connect(operator_client, org))
    query = callback_query(callback)
    forged = urlencode({"code": query["code"], "state": "forged-" + query["state"][:20]})
    response = operator_client.get(f"{reverse('tokens:oauth-callback')}?{forged}")
    assert response.status_code == 400
    assert b"does not match a connect request" in response.content
    assert provider.token_calls == []
    assert Org.objects.get(pk=org.pk).status == Org.Status.PENDING


def test_replayed_callback_is_400_and_keeps_the_tokens(operator_client, org, provider):
    callback = provider_redirect(start_connect(operator_client, org))
    assert follow_callback(operator_client, callback).status_code == 302
    before = snapshot(org)
    replay = follow_callback(operator_client, callback)
    assert replay.status_code == 400
    assert snapshot(org) == before
    assert len(provider.token_calls) == 1


def test_expired_state_is_400(operator_client, org, provider, frozen_clock, settings):
    callback = provider_redirect(start_connect(operator_client, org))
    frozen_clock.advance(seconds=601)
    response = follow_callback(operator_client, callback)
    assert response.status_code == 400
    assert b"expired" in response.content
    assert provider.token_calls == []
    assert Org.objects.get(pk=org.pk).status == Org.Status.PENDING


def test_state_from_another_session_is_refused(client, org, provider, operator):
    client.force_login(operator)
    callback = provider_redirect(start_connect(client, org))
    other = make_staff("other", "tokens.connect_org")
    client.force_login(other)  # a new session: the pending state is not in it
    response = follow_callback(client, callback)
    assert response.status_code == 400
    assert provider.token_calls == []


def test_access_denied_records_a_failed_event_and_keeps_the_org_pending(
    operator_client, org, provider
):
    provider.authorize_error = "access_denied"
    response = follow_callback(
        operator_client, provider_redirect(start_connect(operator_client, org))
    )
    assert response.status_code == 302
    assert any("access_denied" in text for text in messages_of(response))
    event = TokenEvent.objects.get(org=org)
    assert (event.kind, event.outcome, event.error_code) == (
        "connect_failed",
        "failure",
        "access_denied",
    )
    assert Org.objects.get(pk=org.pk).status == Org.Status.PENDING
    assert not Token.objects.filter(org=org).exists()


def test_an_error_code_with_a_trailing_newline_is_recorded_as_invalid(
    operator_client, org, provider
):
    provider.authorize_error = "access_denied\n"
    callback = provider_redirect(start_connect(operator_client, org))
    assert "error=access_denied%0A" in callback
    response = follow_callback(operator_client, callback)
    assert response.status_code == 302
    assert any("invalid_error_code" in text for text in messages_of(response))
    event = TokenEvent.objects.get(org=org)
    assert (event.kind, event.error_code) == ("connect_failed", "invalid_error_code")
    assert "\n" not in event.message
    assert Org.objects.get(pk=org.pk).status == Org.Status.PENDING


def test_code_rejected_by_provider_keeps_current_tokens(operator_client, org, provider):
    connect(operator_client, org)
    before = snapshot(org)
    callback = provider_redirect(start_connect(operator_client, org))
    query = callback_query(callback)
    tampered = urlencode({"code": "not-the-code", "state": query["state"]})
    response = operator_client.get(f"{reverse('tokens:oauth-callback')}?{tampered}")
    assert response.status_code == 302
    assert any("current tokens are kept" in text for text in messages_of(response))
    assert snapshot(org) == before
    event = TokenEvent.objects.filter(org=org).first()
    assert (event.kind, event.error_code, event.http_status) == (
        "connect_failed",
        "invalid_grant",
        400,
    )


@pytest.mark.parametrize("fault", ["500", "html", "no_access_token", "timeout"])
def test_provider_fault_on_exchange_keeps_current_tokens(operator_client, org, provider, fault):
    connect(operator_client, org)
    before = snapshot(org)
    provider.hang_seconds = 3.0
    callback = provider_redirect(start_connect(operator_client, org))
    provider.fail_next(fault)
    response = follow_callback(operator_client, callback)
    assert response.status_code == 302
    assert any("was not connected" in text for text in messages_of(response))
    assert snapshot(org) == before
    event = TokenEvent.objects.filter(org=org).first()
    assert (event.kind, event.outcome) == ("connect_failed", "failure")


def test_an_absurd_expires_in_at_connect_is_clamped_with_a_warning(
    operator_client, org, provider, frozen_clock
):
    provider.answer_overrides = {"expires_in": 1e30}
    response = connect(operator_client, org)
    token = Token.objects.get(org=org)
    assert response.status_code == 302
    assert Org.objects.get(pk=org.pk).status == Org.Status.CONNECTED
    assert token.access_expires_at == frozen_clock.current + timedelta(days=365)
    event = TokenEvent.objects.get(org=org, kind="connected")
    assert event.outcome == "warning"
    assert "expires_in of 1e+30 s is beyond the maximum" in event.message


def test_an_unusable_token_type_at_connect_is_refused_and_recorded(operator_client, org, provider):
    provider.answer_overrides = {"token_type": "x" * 33}
    response = connect(operator_client, org)
    assert response.status_code == 302
    assert any("was not connected" in text for text in messages_of(response))
    assert not Token.objects.filter(org=org).exists()
    event = TokenEvent.objects.filter(org=org).first()
    assert (event.kind, event.outcome) == ("connect_failed", "failure")
    assert "unusable token_type" in event.message


def test_people_me_org_mismatch_is_recorded_as_an_error_event(operator_client, org, provider):
    provider.userinfo_org_id = "00000000-0000-4000-8000-000000000001"
    connect(operator_client, org)
    org.refresh_from_db()
    mismatch = TokenEvent.objects.get(org=org, kind="org_mismatch")
    assert mismatch.outcome == "failure"
    assert provider.org_id in mismatch.message
    assert org.provider_org_id == "00000000-0000-4000-8000-000000000001"


def test_reconnect_into_another_provider_org_is_refused(operator_client, org, provider):
    connect(operator_client, org)
    before = snapshot(org)
    provider.org_id = "00000000-0000-4000-8000-000000000002"
    provider.userinfo_org_id = provider.org_id
    response = connect(operator_client, org)
    assert response.status_code == 302
    assert any("is bound to" in text for text in messages_of(response))
    assert snapshot(org) == before
    assert TokenEvent.objects.filter(org=org).first().error_code == "org_mismatch"


def test_a_second_org_signing_in_to_a_bound_provider_org_is_refused(operator_client, org, provider):
    connect(operator_client, org)
    bound = snapshot(org)
    twin = Org.objects.create(name="Acme again", slug="acme-2", integration=org.integration)
    response = connect(operator_client, twin)  # the same Webex org signs in again
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tokens_org_change", args=[twin.pk])
    assert any(
        f"Provider org {provider.org_id} is already bound to org 'acme'" in text
        for text in messages_of(response)
    )
    assert snapshot(twin) == (Org.Status.PENDING, "", None)
    assert snapshot(org) == bound
    event = TokenEvent.objects.get(org=twin)
    assert (event.kind, event.outcome, event.error_code) == (
        "connect_failed",
        "failure",
        "org_conflict",
    )
    assert "'acme'" in event.message
    token = Token.objects.get(org=org)
    for secret in (token.access_token, token.refresh_token, provider.client_secret):
        assert secret not in event.message


def test_unknown_org_is_404(operator_client, db):
    response = operator_client.get(reverse("tokens:oauth-connect", args=["no-such-org"]))
    assert response.status_code == 404


def test_anonymous_user_is_sent_to_login(client, org):
    response = client.get(reverse("tokens:oauth-connect", args=[org.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_user_is_403(client, org, django_user_model):
    user = django_user_model.objects.create_user("customer", password="pw")
    client.force_login(user)
    assert client.get(reverse("tokens:oauth-connect", args=[org.slug])).status_code == 403
    assert client.get(reverse("tokens:oauth-callback") + "?state=x").status_code == 403


def test_staff_without_connect_permission_is_403(client, org, provider):
    client.force_login(make_staff("viewer", "tokens.view_org"))
    assert client.get(reverse("tokens:oauth-connect", args=[org.slug])).status_code == 403
    assert client.post(reverse("tokens:oauth-connect", args=[org.slug])).status_code == 403
    assert SESSION_KEY not in client.session
    assert provider.authorize_calls == []


def test_disabled_org_cannot_be_connected(operator_client, org, provider):
    org.status = Org.Status.DISABLED
    org.save()
    for send in (operator_client.get, operator_client.post):
        response = send(reverse("tokens:oauth-connect", args=[org.slug]))
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:tokens_org_change", args=[org.pk])
        assert any("disabled" in text for text in messages_of(response))
    assert SESSION_KEY not in operator_client.session


def test_org_disabled_during_sign_in_is_not_connected(operator_client, org, provider):
    callback = provider_redirect(start_connect(operator_client, org))
    Org.objects.filter(pk=org.pk).update(status=Org.Status.DISABLED)
    response = follow_callback(operator_client, callback)
    assert response.status_code == 302
    assert any("disabled meanwhile" in text for text in messages_of(response))
    assert provider.token_calls == []  # the code was never exchanged
    assert Org.objects.get(pk=org.pk).status == Org.Status.DISABLED
    assert not Token.objects.filter(org=org).exists()
    event = TokenEvent.objects.get(org=org)
    assert (event.kind, event.error_code) == ("connect_failed", "org_disabled")


def test_connect_get_shows_a_confirmation_page_and_starts_nothing(operator_client, org, provider):
    url = reverse("tokens:oauth-connect", args=[org.slug])
    response = operator_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert org.name in page and org.integration.name in page
    assert 'method="post"' in page and "csrfmiddlewaretoken" in page
    assert SESSION_KEY not in operator_client.session  # no OAuth state was created
    assert provider.authorize_calls == []


def test_connect_post_needs_the_csrf_token_and_then_redirects_to_the_provider(
    org, provider, operator
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = reverse("tokens:oauth-connect", args=[org.slug])
    forged = client.post(url)  # a cross-site form has no token
    assert forged.status_code == 403
    assert SESSION_KEY not in client.session
    page = client.get(url).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    response = client.post(url, {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302
    assert response["Location"].startswith(provider.authorize_url + "?")
    assert len(client.session[SESSION_KEY]) == 1


def test_connect_is_get_or_post_only(operator_client, org):
    response = operator_client.put(reverse("tokens:oauth-connect", args=[org.slug]))
    assert response.status_code == 405


def test_no_secret_in_log_output_during_connect(operator_client, org, provider, caplog):
    caplog.set_level(logging.DEBUG)
    connect(operator_client, org)
    token = Token.objects.get(org=org)
    assert any("org connected" in record.getMessage() for record in caplog.records)
    for secret in (token.access_token, token.refresh_token, provider.client_secret):
        assert secret not in caplog.text


def test_sign_in_for_an_org_moved_to_another_integration_meanwhile_is_refused(
    operator_client, org, provider, other_integration, other_provider
):
    callback = provider_redirect(start_connect(operator_client, org))
    org.integration = other_integration
    org.save()  # pending, so the move is allowed
    response = follow_callback(operator_client, callback)
    assert response.status_code == 409
    assert b"moved to another integration" in response.content
    assert provider.token_calls == [] and other_provider.token_calls == []
    assert not Token.objects.filter(org=org).exists()


def test_org_moved_to_another_integration_during_the_code_exchange_is_not_connected(
    org, provider, other_integration
):
    Org.objects.filter(pk=org.pk).update(integration=other_integration)  # `org` is stale now
    with pytest.raises(ConnectError, match="moved to another integration"):
        connect_org(org, provider)
    assert not Token.objects.filter(org=org).exists()
    event = TokenEvent.objects.get(org=org)
    assert (event.kind, event.error_code) == ("connect_failed", "integration_changed")


def test_connect_with_an_undecryptable_client_secret_shows_the_error_page_and_changes_nothing(
    operator_client, connected_org, provider
):
    before = snapshot(connected_org)
    events = TokenEvent.objects.filter(org=connected_org).count()
    store_under_lost_key(connected_org.integration, "client_secret", "lost-client-secret")
    provider.reset_records()
    url = reverse("tokens:oauth-connect", args=[connected_org.slug])
    for send in (operator_client.get, operator_client.post):
        response = send(url)
        assert response.status_code == 409
        page = response.content.decode()
        assert "cannot be decrypted with the configured keys" in page
        assert "enter the client secret again in the integration" in page
        assert "lost-client-secret" not in page
    assert SESSION_KEY not in operator_client.session  # no OAuth state was created
    assert provider.authorize_calls == []
    assert snapshot(connected_org) == before
    assert TokenEvent.objects.filter(org=connected_org).count() == events


def test_a_client_secret_undecryptable_by_the_callback_shows_the_error_page(
    operator_client, org, provider
):
    callback = provider_redirect(start_connect(operator_client, org))
    store_under_lost_key(org.integration, "client_secret", "lost-client-secret")
    response = follow_callback(operator_client, callback)
    assert response.status_code == 409
    page = response.content.decode()
    assert "Cannot decrypt Integration.client_secret" in page and "Nothing was changed" in page
    assert "lost-client-secret" not in page
    assert provider.token_calls == []  # the code was never exchanged
    assert Org.objects.get(pk=org.pk).status == Org.Status.PENDING
    assert not Token.objects.filter(org=org).exists()


def test_the_error_description_of_a_callback_is_stored_without_control_characters(
    operator_client, org, provider
):
    state = callback_query(start_connect(operator_client, org))["state"]
    description = "Consent\nrefused\x00 by\r\n\tthe \u202eadmin\x1b[31m."
    query = urlencode({"state": state, "error": "access_denied", "error_description": description})
    response = operator_client.get(f"{reverse('tokens:oauth-callback')}?{query}")
    assert response.status_code == 302
    event = TokenEvent.objects.get(org=org)
    assert event.message.endswith("Provider said: Consent refused by the admin [31m.")
    assert not any(ord(c) < 0x20 or c == "\u202e" for c in event.message)
