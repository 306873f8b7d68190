"""The token API against the fake provider: every status, on-demand refresh, counters."""

import base64
import json
import logging
import time
from dataclasses import fields
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import get_hasher
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver

from tests.conftest import connect_org, store_under_lost_key
from tokens import selectors, services
from tokens.api import errors, views
from tokens.fields import Sealed
from tokens.models import ApiClient, Org, Token, TokenEvent, TokenServedCount
from tokens.services.served import served_flush_in_background

pytestmark = pytest.mark.django_db

UNAUTHORIZED = {"error": "unauthorized", "message": errors.UNAUTHORIZED_MESSAGE}


@pytest.fixture
def api_client_and_key(connected_org: Org) -> tuple[ApiClient, str]:
    return services.api_client_create(name="flow designer", orgs=[connected_org])


@pytest.fixture
def key(api_client_and_key) -> str:
    return api_client_and_key[1]


def token_url(slug: str) -> str:
    return f"/api/v1/orgs/{slug}/token"


def get_token(client, slug: str, key: str | None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key is not None else {}
    return client.get(token_url(slug), **headers, **extra)


def test_returns_the_current_access_token_and_its_details(client, frozen_clock, connected_org, key):
    response = get_token(client, "acme", key)
    stored = Token.objects.get(org=connected_org)
    body = response.json()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert body == {
        "access_token": stored.access_token,
        "token_type": "Bearer",
        "expires_at": stored.access_expires_at.isoformat().replace("+00:00", "Z"),
        "expires_in": int((stored.access_expires_at - frozen_clock.current).total_seconds()),
        "org": "acme",
        "provider_org_id": connected_org.provider_org_id,
        "cluster_id": connected_org.cluster_id,
    }
    assert body["access_token"].endswith(f"_{connected_org.cluster_id}_{body['provider_org_id']}")
    assert stored.refresh_token not in response.content.decode()


def test_a_valid_token_is_served_without_a_provider_call(client, connected_org, key, provider):
    provider.reset_records()
    for _ in range(3):
        assert get_token(client, "acme", key).status_code == 200
    assert provider.token_calls == []
    assert not TokenEvent.objects.filter(trigger="api").exists()


def test_a_token_about_to_expire_is_refreshed_first(
    client, frozen_clock, connected_org, key, provider
):
    before = Token.objects.get(org=connected_org)
    frozen_clock.current = before.access_expires_at - timedelta(minutes=4)
    provider.reset_records()
    response = get_token(client, "acme", key)
    after = Token.objects.get(org=connected_org)
    assert response.status_code == 200
    assert provider.refresh_call_count() == 1
    assert after.version == before.version + 1
    assert response.json()["access_token"] == after.access_token != before.access_token
    event = TokenEvent.objects.filter(org=connected_org).first()
    assert (event.kind, event.trigger, event.outcome) == ("refreshed", "api", "success")


def test_expired_token_and_provider_down_answers_503_and_keeps_the_token(
    client, frozen_clock, connected_org, key, provider
):
    before = Token.objects.get(org=connected_org)
    frozen_clock.current = before.access_expires_at + timedelta(seconds=1)
    provider.fail_next("500", count=5)
    response = get_token(client, "acme", key)
    after = Token.objects.get(org=connected_org)
    assert response.status_code == 503
    assert response.json()["error"] == "provider_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert (after.access_token, after.refresh_token) == (before.access_token, before.refresh_token)
    assert after.next_refresh_at > frozen_clock.current  # a retry is planned
    event = TokenEvent.objects.filter(org=connected_org).first()
    assert (event.kind, event.trigger, event.http_status) == ("refresh_failed", "api", 500)


def test_provider_down_but_token_still_valid_serves_the_current_token(
    client, frozen_clock, connected_org, key, provider
):
    before = Token.objects.get(org=connected_org)
    frozen_clock.current = before.access_expires_at - timedelta(minutes=2)
    provider.fail_next("timeout", count=5)
    response = get_token(client, "acme", key)
    assert response.status_code == 200
    assert response.json()["access_token"] == before.access_token


def test_callers_do_not_hammer_a_failing_provider_before_the_planned_retry(
    client, frozen_clock, connected_org, key, provider
):
    before = Token.objects.get(org=connected_org)
    frozen_clock.current = before.access_expires_at + timedelta(seconds=1)
    provider.fail_next("503", count=50)
    provider.reset_records()
    statuses = [get_token(client, "acme", key).status_code for _ in range(5)]
    assert statuses == [503] * 5
    assert len(provider.token_calls) == 1  # the others waited for the planned retry


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer tc_ABCDEFGH_" + "a" * 43,  # upper-case prefix: wrong shape
        "Bearer tc_abcdefgh_" + "a" * 42,  # one character short
        "Bearer tc_abcdefgh_" + "a" * 100_000,  # enormous
        "Bearer tc_abcdefgh_" + "a" * 43,  # right shape, unknown prefix
        "bearer\ttc_abcdefgh_" + "a" * 43,
    ],
)
def test_bad_authorization_headers_get_one_401(client, connected_org, key, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get(token_url("acme"), **headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response["Cache-Control"] == "no-store"


def test_right_prefix_with_a_wrong_secret_gets_the_same_401(client, connected_org, key):
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = get_token(client, "acme", forged)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_a_revoked_key_gets_the_same_401_at_once(client, connected_org, api_client_and_key):
    api_client, key = api_client_and_key
    assert get_token(client, "acme", key).status_code == 200
    assert services.api_client_revoke(client=api_client) is True
    response = get_token(client, "acme", key)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert services.api_client_revoke(client=api_client) is False


def test_an_org_outside_the_key_scope_is_403(client, connected_org, integration, key):
    Org.objects.create(name="Other", slug="other", integration=integration)
    response = get_token(client, "other", key)
    assert response.status_code == 403
    assert response.json()["error"] == "org_not_allowed"


def test_an_all_orgs_client_reads_any_org(client, connected_org):
    _, key = services.api_client_create(name="everything", all_orgs=True)
    assert get_token(client, "acme", key).status_code == 200


def test_short_lived_tokens_are_refreshed_at_most_once_per_interval(
    client, frozen_clock, connected_org, key, provider
):
    """Tokens that live 90 s, shorter than the 5 min refresh margin: without a minimum
    interval, every call would ask the provider for a new one and write an event."""
    provider.expires_in = 90
    token = Token.objects.get(org=connected_org)
    frozen_clock.current = token.access_expires_at - timedelta(minutes=4)
    provider.reset_records()
    served = set()
    for _ in range(6):  # 0 to 50 s after the first call's refresh
        response = get_token(client, "acme", key)
        assert response.status_code == 200
        served.add(response.json()["access_token"])
        frozen_clock.advance(seconds=10)
    assert provider.refresh_call_count() == 1
    assert served == {Token.objects.get(org=connected_org).access_token}
    frozen_clock.advance(seconds=1)  # 61 s: past the interval, the token still valid
    assert get_token(client, "acme", key).status_code == 200
    assert provider.refresh_call_count() == 2
    assert TokenEvent.objects.filter(trigger="api").count() == 2


def test_an_expired_short_lived_token_is_refreshed_within_the_interval(
    client, frozen_clock, connected_org, key, provider
):
    provider.expires_in = 30
    token = Token.objects.get(org=connected_org)
    frozen_clock.current = token.access_expires_at - timedelta(minutes=4)
    provider.reset_records()
    assert get_token(client, "acme", key).status_code == 200
    frozen_clock.advance(seconds=31)  # expired, though refreshed only 31 s ago
    response = get_token(client, "acme", key)
    assert response.status_code == 200
    assert provider.refresh_call_count() == 2
    assert response.json()["access_token"] == Token.objects.get(org=connected_org).access_token


@pytest.mark.parametrize(
    "slug", ["nope", "acme%00", "..%2F..%2Fetc", "a" * 300, "%C3%BCber", "acme'--", "%20"]
)
def test_unknown_or_odd_slugs_get_a_json_404(client, connected_org, key, slug):
    response = get_token(client, slug, key)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error", "message"}


def test_other_paths_under_api_get_a_json_404(client, key):
    response = client.get("/api/v2/whatever", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    "path", ["/api/x%0A", "/api/%0A", "/api/token%0A", "/api/v1/orgs/acme/token%0A", "/api/a%0Ab"]
)
def test_a_path_under_api_with_an_encoded_newline_gets_a_json_404(client, connected_org, key, path):
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (Org.Status.NEEDS_RECONNECT, "invalid_grant: token revoked", "needs_reconnect"),
        (Org.Status.PENDING, "", "pending"),
        (Org.Status.DISABLED, "", "disabled"),
    ],
)
def test_an_org_that_is_not_connected_is_409_with_the_reason(
    client, connected_org, key, provider, status, reason, error
):
    Org.objects.filter(pk=connected_org.pk).update(status=status, status_reason=reason)
    provider.reset_records()
    response = get_token(client, "acme", key)
    assert response.status_code == 409
    assert response.json()["error"] == error
    assert reason in response.json()["message"]
    assert provider.token_calls == []


def test_a_connected_org_without_a_refresh_token_answers_409_needs_reconnect(
    client, frozen_clock, connected_org, key, provider
):
    token = Token.objects.get(org=connected_org)
    Token.objects.filter(pk=token.pk).update(refresh_token="")
    frozen_clock.current = token.access_expires_at - timedelta(minutes=1)
    response = get_token(client, "acme", key)
    assert (response.status_code, response.json()["error"]) == (409, "needs_reconnect")
    assert "no refresh token" in response.json()["message"]


def test_invalid_grant_during_on_demand_refresh_answers_409(
    client, frozen_clock, connected_org, key, provider
):
    frozen_clock.current = Token.objects.get(org=connected_org).access_expires_at
    provider.fail_next("invalid_grant")
    response = get_token(client, "acme", key)
    assert response.status_code == 409
    assert response.json()["error"] == "needs_reconnect"
    assert "invalid_grant" in response.json()["message"]


def test_a_token_no_key_decrypts_answers_409_needs_reconnect_after_the_key_check(
    client, connected_org, key, legacy_client, provider
):
    store_under_lost_key(Token.objects.get(org=connected_org), "access_token", "lost-token")
    provider.reset_records()
    wrong = get_token(client, "acme", key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert (wrong.status_code, wrong.json()) == (401, UNAUTHORIZED)
    for response in (get_token(client, "acme", key), legacy_get(client, connected_org)):
        assert (response.status_code, response.json()["error"]) == (409, "needs_reconnect")
        assert "encryption_key" in response.json()["message"]
        assert b"lost-token" not in response.content
    assert provider.token_calls == []


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_only_get_and_head_are_allowed(client, connected_org, key, method):
    response = getattr(client, method)(token_url("acme"), HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"] == "method_not_allowed"


def test_head_checks_everything_but_returns_no_token(client, connected_org, key):
    assert client.head(token_url("acme"), HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert client.head(token_url("acme"), HTTP_AUTHORIZATION="Bearer x").status_code == 401
    response = client.head(token_url("acme"), HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.content == b""


def test_source_networks_are_enforced(client, connected_org):
    _, key = services.api_client_create(
        name="restricted", orgs=[connected_org], allowed_networks="10.1.0.0/16\n2001:db8::/32"
    )
    assert get_token(client, "acme", key, REMOTE_ADDR="10.1.2.3").status_code == 200
    assert get_token(client, "acme", key, REMOTE_ADDR="2001:db8::7").status_code == 200
    refused = get_token(client, "acme", key, REMOTE_ADDR="10.2.0.1")
    assert (refused.status_code, refused.json()["error"]) == (403, "source_not_allowed")


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client, connected_org):
    _, key = services.api_client_create(
        name="restricted", orgs=[connected_org], allowed_networks="203.0.113.0/24"
    )
    spoofed = get_token(client, "acme", key, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert spoofed.status_code == 403


def test_x_forwarded_for_entry_of_the_trusted_proxy_is_used(client, connected_org, settings):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "TRUSTED_PROXY_COUNT": 1}
    _, key = services.api_client_create(
        name="restricted", orgs=[connected_org], allowed_networks="203.0.113.0/24"
    )
    # The client may write anything on the left; only the proxy's own entry counts.
    good = get_token(client, "acme", key, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.9")
    bad = get_token(client, "acme", key, HTTP_X_FORWARDED_FOR="203.0.113.9, 10.9.9.9")
    missing = get_token(client, "acme", key)
    assert (good.status_code, bad.status_code, missing.status_code) == (200, 403, 403)


def test_repeated_failures_from_one_address_get_429(client, connected_org, key, settings):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "API_AUTH_FAILURE_LIMIT": 3}
    for _ in range(3):
        assert get_token(client, "acme", "tc_wrong", REMOTE_ADDR="198.51.100.7").status_code == 401
    blocked = get_token(client, "acme", key, REMOTE_ADDR="198.51.100.7")
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many_failures"
    assert int(blocked["Retry-After"]) > 0
    assert get_token(client, "acme", key, REMOTE_ADDR="198.51.100.8").status_code == 200


def test_a_throttled_caller_behind_a_counted_proxy_does_not_block_another(
    client, connected_org, key, settings
):
    settings.TOKEN_CONSOLE = {
        **settings.TOKEN_CONSOLE,
        "TRUSTED_PROXY_COUNT": 1,
        "API_AUTH_FAILURE_LIMIT": 3,
    }

    def via_proxy(api_key: str, caller: str) -> int:  # every request comes from the proxy
        return get_token(
            client, "acme", api_key, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=caller
        ).status_code

    assert [via_proxy("tc_wrong", "203.0.113.5") for _ in range(3)] == [401] * 3
    assert via_proxy(key, "203.0.113.5") == 429
    assert via_proxy(key, "198.51.100.7") == 200


def test_served_tokens_are_counted_per_hour_without_a_write_per_request(
    client, frozen_clock, connected_org, api_client_and_key, django_assert_max_num_queries
):
    api_client, key = api_client_and_key
    get_token(client, "acme", key)  # first use writes last_used_at
    with django_assert_max_num_queries(1):  # client, org, token and scope in one
        get_token(client, "acme", key)
    frozen_clock.advance(hours=1)
    get_token(client, "acme", key)
    assert TokenServedCount.objects.count() == 0  # held in memory until the flush
    services.served_flush()
    counts = {c.hour.hour: c.count for c in TokenServedCount.objects.filter(client=api_client)}
    assert counts == {12: 2, 13: 1}
    assert not TokenEvent.objects.filter(trigger="api").exists()


def test_sign_in_lockout_and_second_factor_add_no_query_to_the_api(
    client, settings, connected_org, key, django_user_model, django_assert_num_queries
):
    settings.REQUIRE_STAFF_2FA = True
    django_user_model.objects.create_user("alice", password="right", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):  # this address is now locked out of the admin
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    get_token(client, "acme", key)  # first use writes last_used_at
    with django_assert_num_queries(1):  # client, org, token and scope in one
        response = get_token(client, "acme", key)
    assert response.status_code == 200


def test_api_requests_never_write_served_counts_themselves(client, connected_org, key, settings):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "API_SERVED_FLUSH_INTERVAL": 0}
    table = TokenServedCount._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert get_token(client, "acme", key).status_code == 200
    assert not [q for q in queries.captured_queries if table in q["sql"]]
    assert not TokenServedCount.objects.exists()
    services.served_flush()
    assert TokenServedCount.objects.get().count == 3


@pytest.mark.django_db(transaction=True)
def test_the_background_flush_writes_served_counts_off_the_request_path(
    client, connected_org, key, settings
):
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "API_SERVED_FLUSH_INTERVAL": 0.05}
    served_flush_in_background()
    try:
        get_token(client, "acme", key)
        get_token(client, "acme", key)
        for _ in range(200):  # bounded poll for the flush thread's commit
            if TokenServedCount.objects.filter(count=2).exists():
                break
            time.sleep(0.05)
    finally:
        served_flush_in_background(False)
    assert TokenServedCount.objects.get().count == 2


def test_last_used_is_written_at_most_once_a_minute(
    client, frozen_clock, connected_org, api_client_and_key
):
    api_client, key = api_client_and_key
    get_token(client, "acme", key)
    first = ApiClient.objects.get(pk=api_client.pk).last_used_at
    frozen_clock.advance(seconds=30)
    get_token(client, "acme", key)
    assert (
        ApiClient.objects.get(pk=api_client.pk).last_used_at
        == first
        == frozen_clock.current - (timedelta(seconds=30))
    )
    frozen_clock.advance(seconds=31)
    get_token(client, "acme", key)
    assert ApiClient.objects.get(pk=api_client.pk).last_used_at == frozen_clock.current


# The sample app's /api/token --------------------------------------------------------------


@pytest.fixture
def legacy_client(connected_org: Org) -> ApiClient:
    client, _ = services.api_client_create(
        name="sample flow",
        orgs=[connected_org],
        legacy_from="flow-designer",
        legacy_passphrase="correct horse battery staple",
    )
    return client


def legacy_get(client, connected_org: Org, **overrides: str):
    headers = {
        "HTTP_X_ORGANIZATION_ID": connected_org.provider_org_id,
        "HTTP_X_FROM": "flow-designer",
        "HTTP_X_API_PHRASE": "correct horse battery staple",
    }
    headers.update(overrides)
    return client.get("/api/token", **{k: v for k, v in headers.items() if v is not None})


def test_legacy_endpoint_returns_only_the_access_token(client, connected_org, legacy_client):
    response = legacy_get(client, connected_org)
    assert response.status_code == 200
    assert response.json() == {"access_token": Token.objects.get(org=connected_org).access_token}
    assert response["Cache-Control"] == "no-store"


def test_legacy_endpoint_accepts_the_webex_base64_org_id(client, connected_org, legacy_client):
    encoded = base64.urlsafe_b64encode(
        f"ciscospark://us/ORGANIZATION/{connected_org.provider_org_id}".encode()
    ).decode()
    assert legacy_get(client, connected_org, HTTP_X_ORGANIZATION_ID=encoded).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"HTTP_X_ORGANIZATION_ID": None},
        {"HTTP_X_FROM": None},
        {"HTTP_X_API_PHRASE": None},
        {"HTTP_X_API_PHRASE": "wrong"},
        {"HTTP_X_FROM": "someone-else"},
        {"HTTP_X_ORGANIZATION_ID": "00000000-0000-0000-0000-000000000000"},
        {"HTTP_X_API_PHRASE": "x" * 10_000},
    ],
)
def test_legacy_endpoint_missing_or_wrong_header_is_401(
    client, connected_org, legacy_client, overrides
):
    response = legacy_get(client, connected_org, **overrides)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_legacy_endpoint_refuses_a_revoked_client_and_other_networks(
    client, connected_org, legacy_client
):
    ApiClient.objects.filter(pk=legacy_client.pk).update(allowed_networks="10.0.0.0/8")
    assert legacy_get(client, connected_org).status_code == 403
    assert legacy_get(client, connected_org, REMOTE_ADDR="10.0.0.5").status_code == 200
    services.api_client_revoke(client=legacy_client)
    assert legacy_get(client, connected_org, REMOTE_ADDR="10.0.0.5").status_code == 401


def test_legacy_passphrase_is_stored_hashed(legacy_client):
    stored = ApiClient.objects.get(pk=legacy_client.pk).legacy_passphrase_hash
    assert stored.startswith(("pbkdf2_sha256$", "md5$"))  # tests use the fast MD5 hasher
    assert "correct horse" not in stored


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every password-hasher computation from now on (the unit a passphrase check costs)."""
    hasher = type(get_hasher())
    original = hasher.encode
    computed = []

    def encode(self, password, *args, **kwargs):
        computed.append("hash")
        return original(self, password, *args, **kwargs)

    monkeypatch.setattr(hasher, "encode", encode)
    return computed


def legacy_cost(client, connected_org: Org, hashes: list[str], **overrides: str) -> tuple[int, int]:
    """The status of a legacy request and the passphrase hashes it cost."""
    before = len(hashes)
    status = legacy_get(client, connected_org, **overrides).status_code
    return status, len(hashes) - before


def test_the_legacy_endpoint_reads_client_org_and_token_in_one_query(
    client, connected_org, legacy_client, django_assert_max_num_queries
):
    legacy_get(client, connected_org)  # first use writes last_used_at
    with django_assert_max_num_queries(1):  # client, org, token and scope in one
        response = legacy_get(client, connected_org)
    assert response.status_code == 200


def test_a_failed_legacy_request_costs_one_hash_whether_the_org_exists_or_not(
    client, connected_org, legacy_client, hashes
):
    for name in ("ivr", "ops"):
        services.api_client_create(
            name=name, orgs=[connected_org], all_orgs=name == "ops", legacy_from=name,
            legacy_passphrase=f"{name} phrase",
        )  # fmt: skip
    costs = {}
    for org_id in ("00000000-0000-4000-8000-0000000000ff", connected_org.provider_org_id):
        for sender in ("flow-designer", "ops", "nobody"):
            costs[org_id, sender] = legacy_cost(
                client, connected_org, hashes, HTTP_X_ORGANIZATION_ID=org_id,
                HTTP_X_FROM=sender, HTTP_X_API_PHRASE=f"wrong for {org_id} {sender}",
            )  # fmt: skip
    assert set(costs.values()) == {(401, 1)}, costs


def test_a_legacy_passphrase_is_hashed_once_then_remembered(
    client, connected_org, legacy_client, hashes
):
    assert legacy_cost(client, connected_org, hashes) == (200, 1)
    assert legacy_cost(client, connected_org, hashes) == (200, 0)


def test_legacy_clients_sharing_an_x_from_for_an_org_are_refused_after_one_hash(
    client, connected_org, legacy_client, hashes, caplog
):
    twin, _ = services.api_client_create(
        name="twin", orgs=[connected_org], legacy_from="twin-flow", legacy_passphrase="other"
    )
    ApiClient.objects.filter(pk=twin.pk).update(legacy_from="flow-designer")  # old data
    assert legacy_cost(client, connected_org, hashes) == (401, 1)
    assert "'sample flow', 'twin' share one X-From" in caplog.text


def test_a_legacy_x_from_cannot_be_shared_by_clients_of_one_org(connected_org, legacy_client):
    with pytest.raises(ValidationError, match="'sample flow' has this X-From"):
        services.api_client_create(
            name="ops", all_orgs=True, legacy_from="flow-designer", legacy_passphrase="p"
        )
    assert not ApiClient.objects.filter(name="ops").exists()


def test_legacy_endpoint_answers_409_rather_than_guess_between_two_bound_orgs(
    client, connected_org, integration, provider, legacy_client
):
    other = connect_org(
        Org.objects.create(name="Other", slug="other", integration=integration), provider
    )
    # Two orgs bound to one provider org id: old data, from before connect refused it.
    Org.objects.filter(pk=other.pk).update(provider_org_id=connected_org.provider_org_id)
    services.api_client_create(
        name="ops", all_orgs=True, legacy_from="ops", legacy_passphrase="ops phrase"
    )
    services.api_client_create(
        name="other flow", orgs=[other], legacy_from="other-flow", legacy_passphrase="o phrase"
    )
    response = legacy_get(client, connected_org, HTTP_X_FROM="ops", HTTP_X_API_PHRASE="ops phrase")
    assert response.status_code == 409
    assert response.json()["error"] == "ambiguous_org"
    assert b"access_token" not in response.content
    # A client that may read only one of the two is not in doubt.
    tokens = {org: Token.objects.get(org=org).access_token for org in (connected_org, other)}
    assert legacy_get(client, connected_org).json() == {"access_token": tokens[connected_org]}
    response = legacy_get(
        client, connected_org, HTTP_X_FROM="other-flow", HTTP_X_API_PHRASE="o phrase"
    )
    assert response.json() == {"access_token": tokens[other]}


def test_an_unexpected_error_answers_json_500_and_is_logged(
    client, connected_org, key, monkeypatch, caplog
):
    def lookup_failing(**kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(selectors, "api_token_lookup", lookup_failing)
    response = get_token(client, "acme", key)
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"error": "internal_error", "message": errors.INTERNAL_ERROR_MESSAGE}
    assert [r.levelname for r in caplog.records if r.name == "tokens.api"] == ["ERROR"]
    assert "Traceback" in caplog.text
    assert "RuntimeError: the database went away" in caplog.text


def test_an_error_outside_the_api_views_still_answers_json_under_api(rf):
    assert get_resolver().resolve_error_handler(500) is views.server_error
    response = views.server_error(rf.get("/api/v1/orgs/acme/token"))
    assert response.status_code == 500
    assert json.loads(response.content)["error"] == "internal_error"
    assert response["Cache-Control"] == "no-store"
    assert views.server_error(rf.get("/admin/"))["Content-Type"].startswith("text/html")


# Secrets ------------------------------------------------------------------------------------


def test_no_response_log_or_event_holds_a_refresh_token_or_client_secret(
    client, frozen_clock, connected_org, key, legacy_client, provider, caplog
):
    caplog.set_level(logging.DEBUG)
    token = Token.objects.get(org=connected_org)
    secrets = {token.refresh_token, provider.client_secret}
    bodies = [get_token(client, "acme", key).content]
    frozen_clock.current = token.access_expires_at - timedelta(minutes=1)
    bodies.append(get_token(client, "acme", key).content)  # on-demand refresh
    secrets.add(Token.objects.get(org=connected_org).refresh_token)
    frozen_clock.current += timedelta(minutes=5)
    provider.fail_next("500", count=10)
    frozen_clock.current = Token.objects.get(org=connected_org).access_expires_at
    bodies.append(get_token(client, "acme", key).content)
    bodies.append(get_token(client, "acme", key[:-1] + "A").content)
    bodies.append(legacy_get(client, connected_org).content)
    bodies.append(client.get("/api/v1/openapi.json").content)
    events = json.dumps(list(TokenEvent.objects.values()), default=str)
    for secret in secrets:
        assert all(secret.encode() not in body for body in bodies)
        assert secret not in caplog.text
        assert secret not in events


# OpenAPI ----------------------------------------------------------------------------------


def test_openapi_document_describes_both_endpoints(client):
    response = client.get("/api/v1/openapi.json")
    document = response.json()
    assert response.status_code == 200
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/api/v1/orgs/{slug}/token", "/api/token"}


def test_api_urls_set_no_session_cookie(client, connected_org, key):
    response = client.get(token_url("acme"), HTTP_AUTHORIZATION=f"Bearer {key}")
    assert "Set-Cookie" not in response
    assert "sessionid" not in response.cookies


def test_refused_requests_change_nothing(client, frozen_clock, connected_org, api_client_and_key):
    api_client, key = api_client_and_key
    token = Token.objects.get(org=connected_org)
    events = TokenEvent.objects.count()
    refused = [
        get_token(client, "acme", key[:-1] + ("A" if key[-1] != "A" else "B")),
        get_token(client, "acme", "tc_" + "x" * 5000),
        get_token(client, "nope", key),
        client.post(token_url("acme"), HTTP_AUTHORIZATION=f"Bearer {key}"),
        client.get("/api/token", HTTP_X_FROM="x", HTTP_X_API_PHRASE="y"),
    ]
    services.served_flush()
    assert [r.status_code for r in refused] == [401, 401, 404, 405, 401]
    assert ApiClient.objects.get(pk=api_client.pk).last_used_at is None
    assert not TokenServedCount.objects.exists()
    assert TokenEvent.objects.count() == events
    after = Token.objects.get(org=connected_org)
    assert (after.version, after.access_token) == (token.version, token.access_token)


# The lookup ------------------------------------------------------------------------------


def comparable(record) -> dict:
    """A lookup record as plain values: a sealed token as its ciphertext."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    return {k: (v.ciphertext if isinstance(v, Sealed) else v) for k, v in values.items()}


@pytest.mark.parametrize(
    "state",
    ["pending", "connected", "needs_reconnect", "disabled", "no_refresh_token", "lost_key"],
)
def test_the_raw_lookups_read_the_same_record_as_the_orm_in_every_org_state(
    connected_org, org, integration, legacy_client, state
):
    if state == "pending":
        connected_org = Org.objects.create(
            name="Pending", slug="pending", integration=integration, provider_org_id="p-1"
        )
        legacy_client.orgs.add(connected_org)
    elif state in ("needs_reconnect", "disabled"):
        Org.objects.filter(pk=org.pk).update(status=state, status_reason=f"{state}: reason")
    elif state == "no_refresh_token":
        Token.objects.filter(org=org).update(refresh_token="")
    elif state == "lost_key":
        store_under_lost_key(Token.objects.get(org=org), "access_token", "lost-token")
    client = ApiClient.objects.get(pk=legacy_client.pk)
    caller, raw = selectors.api_token_lookup(key_prefix=client.key_prefix, slug=connected_org.slug)
    orm = selectors.api_org_token(org_id=connected_org.pk, in_scope=True)
    assert comparable(raw) == comparable(orm)
    token = Token.objects.filter(org=connected_org).first()
    stored = Token.objects.filter(org=connected_org).values_list("access_token", flat=True).first()
    assert raw.access_expires_at == (token.access_expires_at if token else None)
    assert (
        raw.access_token is None
        if token is None
        else raw.access_token.ciphertext == (stored.ciphertext)
    )
    assert (raw.slug, raw.status) == (connected_org.slug, Org.objects.get(pk=raw.org_id).status)
    assert comparable(caller) == {
        "id": client.pk, "name": client.name, "key_hash": client.key_hash,
        "legacy_passphrase_hash": client.legacy_passphrase_hash, "revoked": False,
        "all_orgs": client.all_orgs, "allowed_networks": client.allowed_networks,
        "last_used_at": client.last_used_at,
    }  # fmt: skip
    legacy = selectors.api_legacy_lookup(
        provider_org_id=connected_org.provider_org_id, sender=client.legacy_from
    )
    assert [comparable(c) for c in legacy.callers] == [comparable(caller)]
    assert [comparable(r) for r in legacy.readable[client.pk]] == [comparable(orm)]
