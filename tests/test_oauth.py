"""The OAuth2 client against the fake provider over real HTTP."""

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tokens import oauth
from tokens.demo.provider import FakeProvider
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


@pytest.mark.parametrize(
    ("mode", "value"),
    [
        ("429", "\u00b2"),  # "²": isdigit() says yes, float() says no
        ("503", "\u00b3"),
        ("429", "1\u00b9"),
        ("503", "Mon, 01 Jan 99999999999 00:00:00 GMT"),  # a year past C's int
    ],
)
def test_a_retry_after_that_is_neither_ascii_digits_nor_a_date_is_ignored(provider, mode, value):
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next(mode, retry_after=value)
    with pytest.raises(ProviderUnavailable) as excinfo:
        oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert (excinfo.value.http_status, excinfo.value.retry_after) == (int(mode), None)


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


# The total deadline and the size cap --------------------------------------------------------


@pytest.mark.parametrize("call", ["exchange", "refresh"])
@pytest.mark.parametrize("fault", ["trickle", "trickle_headers"])
def test_a_trickling_answer_is_cut_off_at_the_total_deadline(provider, call, fault):
    # Each byte comes well within the 0.5 s read timeout; the whole answer (or its head
    # alone, before requests hands out any socket) would take over 15 s: only the deadline
    # ends this call.
    provider.trickle_interval = 0.1
    config = config_for(provider, total_deadline=0.8)
    code, verifier = authorize(provider, config)
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next(fault)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match=r"did not finish answering within 0\.8 s"):
        if call == "exchange":
            oauth.exchange_code(config, code=code, redirect_uri=REDIRECT, code_verifier=verifier)
        else:
            oauth.refresh(config, refresh_token=refresh_token)
    assert time.monotonic() - started < 5  # sanity only: the deadline, not the trickle
    assert [c["outcome"] for c in provider.token_calls] == [f"fault:{fault}"]
    # The next call on this thread's session gets a fresh connection and its whole answer.
    assert oauth.refresh(config, refresh_token=refresh_token).access_token


def test_an_answer_larger_than_the_cap_is_refused(provider):
    _, refresh_token = provider.issue_tokens_directly()
    provider.answer_overrides = {"padding": "x" * (2 * 1024 * 1024)}
    with pytest.raises(ProviderResponseInvalid, match="larger than"):
        oauth.refresh(config_for(provider), refresh_token=refresh_token)


# Checking every field of a token answer ----------------------------------------------------

YEAR = 365 * 24 * 3600


@pytest.mark.parametrize(
    ("sent", "kept", "warning"),
    [
        (1e30, YEAR, "expires_in of 1e+30 s is beyond the maximum: clamped to 31536000 s"),
        (10**400, YEAR, "expires_in of a 401-digit number of s is beyond the maximum"),
        ("1e30", YEAR, "beyond the maximum"),
        ("abc", None, "expires_in is not a positive number of seconds"),
        (-5, None, "expires_in is not a positive number of seconds"),
        (0, None, "expires_in is not a positive number of seconds"),
        (True, None, "expires_in is not a positive number of seconds"),
        ({"s": 1}, None, "expires_in is not a positive number of seconds"),
        ("3600", 3600, None),
        (59.5, 60, None),
    ],
)
def test_expires_in_is_clamped_or_ignored_with_a_warning(provider, sent, kept, warning):
    _, refresh_token = provider.issue_tokens_directly()
    provider.answer_overrides = {"expires_in": sent}
    answer = oauth.refresh(config_for(provider, max_lifetime=YEAR), refresh_token=refresh_token)
    assert answer.expires_in == kept
    if warning is None:
        assert answer.warnings == ()
    else:
        assert len(answer.warnings) == 1 and warning in answer.warnings[0]


def test_refresh_token_expires_in_is_clamped_too(provider):
    _, refresh_token = provider.issue_tokens_directly()
    provider.answer_overrides = {"refresh_token_expires_in": 1e30}
    answer = oauth.refresh(config_for(provider, max_lifetime=YEAR), refresh_token=refresh_token)
    assert answer.refresh_token_expires_in == YEAR
    assert "refresh_token_expires_in of 1e+30 s" in answer.warnings[0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("token_type", "B" * 33, "unusable token_type"),
        ("token_type", "Bearer\r\nX-Evil: 1", "unusable token_type"),
        ("token_type", 5, "unusable token_type"),
        ("access_token", "a" * 16385, "unusable access_token"),
        ("access_token", "two words", "unusable access_token"),
        ("refresh_token", "r" * 16385, "unusable refresh_token"),
    ],
)
def test_a_field_that_cannot_be_stored_or_served_is_refused(provider, field, value, message):
    _, refresh_token = provider.issue_tokens_directly()
    provider.answer_overrides = {field: value}
    with pytest.raises(ProviderResponseInvalid, match=message) as excinfo:
        oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert excinfo.value.http_status == 200
    assert str(value) not in str(excinfo.value)


def test_an_over_long_scope_is_cut_at_a_space_with_a_warning(provider):
    _, refresh_token = provider.issue_tokens_directly()
    provider.answer_overrides = {"scope": "spark:people_read " * 500}
    answer = oauth.refresh(config_for(provider), refresh_token=refresh_token)
    assert len(answer.scope) <= 4000
    assert set(answer.scope.split(" ")) == {"spark:people_read"}
    assert answer.warnings == ("The provider's scope is longer than 4000 characters: cut.",)
