"""The OAuth2 client against the fake provider over real HTTP."""

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fake_provider import FakeProvider
from tokens import oauth
from tokens.exceptions import (
    InvalidClient,
    InvalidGrant,
    ProviderError,
    ProviderResponseInvalid,
    ProviderUnavailable,
)

REDIRECT = "http://testserver/oauth/callback/"


def config_for(provider: FakeProvider, **overrides: object) -> oauth.ClientConfig:
    values = {
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "authorize_url": provider.authorize_url,
        "token_url": provider.token_url,
        "userinfo_url": provider.userinfo_url,
        "scopes": "spark:people_read",
        "timeout": (1.0, 0.5),
        **overrides,
    }
    return oauth.ClientConfig(**values)


def authorize(provider: FakeProvider, config: oauth.ClientConfig) -> tuple[str, str]:
    """Run the browser leg: return (code, verifier)."""
    pkce = oauth.make_pkce_pair()
    url = oauth.build_authorize_url(
        config, redirect_uri=REDIRECT, state="st-1", code_challenge=pkce.challenge
    )
    answer = requests.get(url, allow_redirects=False, timeout=2)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0], pkce.verifier


def test_pkce_challenge_is_s256_of_the_verifier():
    pkce = oauth.make_pkce_pair()
    digest = hashlib.sha256(pkce.verifier.encode()).digest()
    assert pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(pkce.verifier) <= 128
    assert pkce.verifier not in repr(pkce)


def test_authorize_url_carries_state_pkce_and_keeps_existing_query(provider):
    config = config_for(provider, authorize_url=provider.authorize_url + "?prompt=select_account")
    url = oauth.build_authorize_url(
        config, redirect_uri=REDIRECT, state="abc", code_challenge="challenge"
    )
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["select_account"]
    assert query["state"] == ["abc"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT]
    assert query["response_type"] == ["code"]


@pytest.mark.parametrize("method", oauth.AUTH_METHODS)
def test_code_exchange_and_refresh_with_each_client_auth_method(provider, method):
    config = config_for(provider, auth_method=method)
    code, verifier = authorize(provider, config)
    answer = oauth.exchange_code(config, code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    assert provider.is_access_token_valid(answer.access_token)
    assert answer.expires_in == provider.expires_in
    assert answer.refresh_token_expires_in == provider.refresh_token_expires_in
    refreshed = oauth.refresh(config, refresh_token=answer.refresh_token)
    assert refreshed.access_token != answer.access_token
    assert [call["auth_method"] for call in provider.token_calls] == [method, method]


def test_wrong_pkce_verifier_is_invalid_grant(provider):
    config = config_for(provider)
    code, _ = authorize(provider, config)
    with pytest.raises(InvalidGrant) as excinfo:
        oauth.exchange_code(config, code=code, redirect_uri=REDIRECT, code_verifier="x" * 50)
    assert excinfo.value.http_status == 400
    assert excinfo.value.error_code == "invalid_grant"


def test_wrong_client_secret_is_invalid_client_without_the_secret_in_the_message(provider):
    config = config_for(provider, client_secret="wrong-secret-value")
    with pytest.raises(InvalidClient) as excinfo:
        oauth.refresh(config, refresh_token="rt-does-not-matter")
    assert excinfo.value.http_status == 401
    assert "wrong-secret-value" not in str(excinfo.value)
    assert "wrong-secret-value" not in excinfo.value.description


@pytest.mark.parametrize(
    ("mode", "error_class", "status"),
    [
        ("500", ProviderUnavailable, 500),
        ("502", ProviderUnavailable, 502),
        ("429", ProviderUnavailable, 429),
        ("html", ProviderResponseInvalid, 200),
        ("no_access_token", ProviderResponseInvalid, 200),
        ("timeout", ProviderUnavailable, None),
        ("reset", ProviderUnavailable, None),
        ("invalid_grant", InvalidGrant, 400),
        ("invalid_client", InvalidClient, 401),
    ],
)
def test_provider_faults_become_typed_errors_without_secrets(provider, mode, error_class, status):
    provider.hang_seconds = 2.0
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next(mode)
    with pytest.raises(error_class) as excinfo:
        oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert excinfo.value.http_status == status
    text = f"{excinfo.value} {excinfo.value.description}"
    assert refresh_token not in text
    assert provider.client_secret not in text


def test_retry_after_is_read_from_429(provider):
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("429", retry_after=37)
    with pytest.raises(ProviderUnavailable) as excinfo:
        oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert excinfo.value.retry_after == 37


def test_unreachable_provider_is_unavailable():
    config = oauth.ClientConfig(
        client_id="c",
        client_secret="s",
        authorize_url="http://127.0.0.1:9/authorize",
        token_url="http://127.0.0.1:9/token",
        timeout=(0.5, 0.5),
    )
    with pytest.raises(ProviderUnavailable, match=r"127\.0\.0\.1:9"):
        oauth.refresh(config, refresh_token="r")


def test_token_response_repr_hides_tokens(provider):
    access, refresh_token = provider.issue_tokens_directly()
    answer = oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert answer.access_token not in repr(answer)
    assert answer.refresh_token not in repr(answer)
    assert provider.client_secret not in repr(config_for(provider))
    assert access


def test_userinfo_rejected_token_is_a_provider_error(provider):
    with pytest.raises(ProviderError) as excinfo:
        oauth.fetch_userinfo(config_for(provider), access_token="not-a-token")
    assert excinfo.value.http_status == 401
