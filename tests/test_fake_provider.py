"""Tests for the fake Webex OAuth2 provider, talking to it over real HTTP with requests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tokens.demo.provider import FakeProvider

REDIRECT_URI = "http://app.test/oauth/callback"
TIMEOUT = 2.0
ORG_ID = "1eb65fdf-9643-417f-9974-ad72cae0e10f"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def make_verifier() -> tuple[str, str]:
    # Computed here independently of the module under test, so a wrong PKCE check would show.
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize(
    provider: FakeProvider, challenge: str | None, **overrides: str | None
) -> requests.Response:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "spark-admin:people_read spark:kms",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return requests.get(
        provider.authorize_url, params=params, allow_redirects=False, timeout=TIMEOUT
    )


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def get_code(provider: FakeProvider) -> tuple[str, str]:
    verifier, challenge = make_verifier()
    return redirect_params(authorize(provider, challenge))["code"], verifier


def token_request(
    provider: FakeProvider, data: dict[str, str], *, auth: str = "basic", timeout: float = TIMEOUT
) -> requests.Response:
    if auth == "basic":
        return requests.post(
            provider.token_url,
            data=data,
            auth=(provider.client_id, provider.client_secret),
            timeout=timeout,
        )
    form = {**data, "client_id": provider.client_id, "client_secret": provider.client_secret}
    return requests.post(provider.token_url, data=form, timeout=timeout)


def exchange(
    provider: FakeProvider, code: str, verifier: str, *, auth: str = "basic"
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    return token_request(provider, data, auth=auth)


def refresh(provider: FakeProvider, refresh_token: str, **kwargs: float) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(provider, data, **kwargs)


def people_me(provider: FakeProvider, access_token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(provider.userinfo_url, headers=headers, timeout=TIMEOUT)


# -- authorize ---------------------------------------------------------------------------------


def test_authorize_redirects_with_code_and_keeps_state_and_existing_query(
    provider: FakeProvider,
) -> None:
    _, challenge = make_verifier()
    response = authorize(provider, challenge, redirect_uri=REDIRECT_URI + "?next=%2Fhome")
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?next=%2Fhome&")
    params = redirect_params(response)
    assert params["state"] == "st-123"
    assert params["code"]
    assert provider.authorize_calls[0]["code_challenge"] == challenge


def test_authorize_unknown_client_is_a_page_not_a_redirect(provider: FakeProvider) -> None:
    response = authorize(provider, make_verifier()[1], client_id="someone-else")
    assert response.status_code == 400
    assert "Location" not in response.headers
    missing = authorize(provider, make_verifier()[1], redirect_uri=None)
    assert missing.status_code == 400


@pytest.mark.parametrize(
    "overrides",
    [{"code_challenge": None}, {"code_challenge_method": "plain"}],
    ids=["no-challenge", "plain-method"],
)
def test_authorize_without_s256_pkce_redirects_with_invalid_request(
    provider: FakeProvider, overrides: dict[str, str | None]
) -> None:
    params = redirect_params(authorize(provider, make_verifier()[1], **overrides))
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-123"
    assert "code" not in params


def test_authorize_error_redirects_back_with_error_and_state(provider: FakeProvider) -> None:
    provider.authorize_error = "access_denied"
    params = redirect_params(authorize(provider, make_verifier()[1]))
    assert params["error"] == "access_denied"
    assert params["error_description"]
    assert params["state"] == "st-123"
    assert "code" not in params


# -- code exchange -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "method"), [("basic", "client_secret_basic"), ("post", "client_secret_post")]
)
def test_code_exchange_with_pkce(provider: FakeProvider, auth: str, method: str) -> None:
    code, verifier = get_code(provider)
    response = exchange(provider, code, verifier, auth=auth)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1209600
    assert body["refresh_token_expires_in"] == 7776000
    assert body["scope"] == "spark-admin:people_read spark:kms"
    assert body["refresh_token"]
    assert provider.is_access_token_valid(body["access_token"])
    assert provider.token_calls[-1]["auth_method"] == method
    assert provider.token_calls[-1]["outcome"] == "ok"


def test_access_token_is_webex_shaped(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    access = exchange(provider, code, verifier).json()["access_token"]
    assert access.endswith(f"_P0A1_{ORG_ID}")
    random_part = access.removesuffix(f"_P0A1_{ORG_ID}")
    assert random_part and "_" not in random_part


def test_basic_auth_credentials_are_form_urlencoded_per_rfc6749() -> None:
    with FakeProvider(client_id="id:with space", client_secret="s&cr=t+/%") as fake:
        verifier, challenge = make_verifier()
        code = redirect_params(authorize(fake, challenge))["code"]
        raw = "id%3Awith+space:s%26cr%3Dt%2B%2F%25"
        headers = {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        response = requests.post(fake.token_url, data=data, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("auth", ["basic", "post", "none"])
def test_wrong_or_missing_client_credentials_are_invalid_client(
    provider: FakeProvider, auth: str
) -> None:
    code, verifier = get_code(provider)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data["code_verifier"] = verifier
    if auth == "basic":
        response = requests.post(
            provider.token_url, data=data, auth=(provider.client_id, "nope"), timeout=TIMEOUT
        )
    elif auth == "post":
        data |= {"client_id": provider.client_id, "client_secret": "nope"}
        response = requests.post(provider.token_url, data=data, timeout=TIMEOUT)
    else:
        response = requests.post(provider.token_url, data=data, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    # The code was not touched by the failed attempt.
    assert exchange(provider, code, verifier).status_code == 200


def test_wrong_verifier_is_invalid_grant(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    response = exchange(provider, code, verifier + "x")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert provider.token_calls[-1]["outcome"] == "invalid_grant"


def test_redirect_uri_mismatch_is_invalid_grant(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI + "/other",
        "code_verifier": verifier,
    }
    assert token_request(provider, data).json()["error"] == "invalid_grant"


def test_code_is_single_use(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    assert exchange(provider, code, verifier).status_code == 200
    again = exchange(provider, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_unsupported_grant_type_and_json_body(provider: FakeProvider) -> None:
    response = token_request(provider, {"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    as_json = requests.post(
        provider.token_url,
        json={"grant_type": "client_credentials"},
        auth=(provider.client_id, provider.client_secret),
        timeout=TIMEOUT,
    )
    assert as_json.json()["error"] == "invalid_request"


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_without_rotation_keeps_refresh_token(provider: FakeProvider) -> None:
    access, refresh_token = provider.issue_tokens_directly()
    first = refresh(provider, refresh_token).json()
    second = refresh(provider, refresh_token).json()
    assert first["refresh_token"] == second["refresh_token"] == refresh_token
    assert first["scope"] == "spark:people_read"
    assert first["access_token"] != second["access_token"] != access
    assert provider.is_access_token_valid(access)
    assert provider.current_refresh_token_for(second["access_token"]) == refresh_token
    assert provider.refresh_call_count() == 2


def test_refresh_can_omit_refresh_token_and_expiry(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    provider.include_refresh_token = False
    provider.include_expires_in = False
    provider.rotate_refresh_tokens = True  # must not rotate a token it does not hand out
    body = refresh(provider, refresh_token).json()
    assert "refresh_token" not in body
    assert "expires_in" not in body
    assert "refresh_token_expires_in" not in body
    assert refresh(provider, refresh_token).status_code == 200


def test_rotation_without_reuse_detection_only_rejects_the_old_token(
    provider: FakeProvider,
) -> None:
    provider.rotate_refresh_tokens = True
    _, old = provider.issue_tokens_directly()
    new = refresh(provider, old).json()["refresh_token"]
    assert new != old
    reused = refresh(provider, old)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert refresh(provider, new).status_code == 200


def test_reuse_detection_revokes_the_whole_grant(provider: FakeProvider) -> None:
    provider.rotate_refresh_tokens = True
    provider.reuse_detection = True
    first_access, old = provider.issue_tokens_directly()
    rotated = refresh(provider, old).json()
    assert refresh(provider, old).json()["error"] == "invalid_grant"
    assert provider.token_calls[-1]["refresh_token"] == old
    assert not provider.is_access_token_valid(first_access)
    assert not provider.is_access_token_valid(rotated["access_token"])
    assert people_me(provider, rotated["access_token"]).status_code == 401
    assert refresh(provider, rotated["refresh_token"]).json()["error"] == "invalid_grant"


def test_concurrent_refreshes_with_rotation_let_exactly_one_win(provider: FakeProvider) -> None:
    provider.rotate_refresh_tokens = True
    _, old = provider.issue_tokens_directly()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def worker() -> None:
        barrier.wait()
        statuses.append(refresh(provider, old).status_code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400, 400, 400]


# -- people/me and revocation ------------------------------------------------------------------


def test_people_me_org_id_round_trip(provider: FakeProvider) -> None:
    access, _ = provider.issue_tokens_directly()
    body = people_me(provider, access).json()
    org_id = body["orgId"]
    assert "=" not in org_id
    decoded = base64.urlsafe_b64decode(org_id + "=" * (-len(org_id) % 4)).decode()
    assert decoded == f"ciscospark://us/ORGANIZATION/{ORG_ID}"
    assert body["emails"] == ["admin@example.com"]
    assert body["displayName"] == "Fake Admin"


def test_people_me_can_report_another_org_and_rejects_bad_tokens(provider: FakeProvider) -> None:
    access, _ = provider.issue_tokens_directly()
    provider.userinfo_org_id = "00000000-0000-0000-0000-000000000000"
    org_id = people_me(provider, access).json()["orgId"]
    decoded = base64.urlsafe_b64decode(org_id + "=" * (-len(org_id) % 4)).decode()
    assert decoded.endswith("/00000000-0000-0000-0000-000000000000")
    bad = people_me(provider, "not-a-token")
    assert bad.status_code == 401
    assert bad.json() == {"message": "invalid token"}


def test_webex_delete_authorizations_revokes_the_grant(provider: FakeProvider) -> None:
    access, refresh_token = provider.issue_tokens_directly()
    url = provider.revoke_url + "?clientId=whatever"
    headers = {"Authorization": f"Bearer {access}"}
    assert requests.delete(url, headers=headers, timeout=TIMEOUT).status_code == 204
    assert not provider.is_access_token_valid(access)
    assert refresh(provider, refresh_token).json()["error"] == "invalid_grant"
    assert requests.delete(url, headers=headers, timeout=TIMEOUT).status_code == 401


def test_rfc7009_revoke(provider: FakeProvider) -> None:
    access, refresh_token = provider.issue_tokens_directly()
    url = provider.base_url + "/v1/revoke"
    creds = (provider.client_id, provider.client_secret)
    unknown = requests.post(url, data={"token": "nope"}, auth=creds, timeout=TIMEOUT)
    assert unknown.status_code == 200
    assert provider.is_access_token_valid(access)
    bad_client = requests.post(url, data={"token": refresh_token}, timeout=TIMEOUT)
    assert bad_client.status_code == 401
    ok = requests.post(url, data={"token": refresh_token}, auth=creds, timeout=TIMEOUT)
    assert ok.status_code == 200
    assert not provider.is_access_token_valid(access)


# -- faults ------------------------------------------------------------------------------------


def _status(expected: int, content_type: str) -> Callable[[requests.Response], None]:
    def check(response: requests.Response) -> None:
        assert response.status_code == expected
        assert response.headers["Content-Type"].startswith(content_type)

    return check


def _json_error(expected: int, error: str) -> Callable[[requests.Response], None]:
    def check(response: requests.Response) -> None:
        assert response.status_code == expected
        assert response.json()["error"] == error

    return check


def _no_access_token(response: requests.Response) -> None:
    assert response.status_code == 200
    assert "access_token" not in response.json()


def _html(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html>Service Unavailable</html>"


def _rate_limited(response: requests.Response) -> None:
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("500", _status(500, "text/plain")),
        ("502", _status(502, "text/plain")),
        ("503", _status(503, "text/plain")),
        ("429", _rate_limited),
        ("html", _html),
        ("no_access_token", _no_access_token),
        ("invalid_grant", _json_error(400, "invalid_grant")),
        ("invalid_client", _json_error(401, "invalid_client")),
    ],
)
def test_fault_answers_once_and_keeps_the_grant(
    provider: FakeProvider, mode: str, check: Callable[[requests.Response], None]
) -> None:
    provider.rotate_refresh_tokens = True  # so a consumed grant would really show
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next(mode)
    check(refresh(provider, refresh_token))
    assert refresh(provider, refresh_token).status_code == 200
    assert [c["outcome"] for c in provider.token_calls] == [f"fault:{mode}", "ok"]
    assert provider.refresh_call_count() == 2


def test_429_sends_retry_after_when_asked(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("429", retry_after=7)
    response = refresh(provider, refresh_token)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_503_sends_retry_after_as_given_when_asked(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("503", retry_after="\u00b2")
    response = refresh(provider, refresh_token)
    assert response.status_code == 503
    assert response.raw.headers["Retry-After"] == "\u00b2"  # the latin-1 byte 0xB2


def test_reset_drops_the_connection(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("reset")
    with pytest.raises(requests.ConnectionError):
        refresh(provider, refresh_token)
    assert refresh(provider, refresh_token).status_code == 200
    assert provider.token_calls[0]["outcome"] == "fault:reset"


def test_timeout_fault_hangs_past_the_client_timeout(provider: FakeProvider) -> None:
    provider.hang_seconds = 0.3
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(provider, refresh_token, timeout=0.1)
    assert refresh(provider, refresh_token).status_code == 200


def test_timeout_fault_answers_504_to_a_patient_client(provider: FakeProvider) -> None:
    provider.hang_seconds = 0.05
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("timeout")
    started = time.monotonic()
    assert refresh(provider, refresh_token).status_code == 504
    assert time.monotonic() - started >= 0.05


def test_stop_releases_a_hanging_request_promptly() -> None:
    fake = FakeProvider().start()
    fake.hang_seconds = 5.0
    _, refresh_token = fake.issue_tokens_directly()
    fake.fail_next("timeout")
    statuses: list[int] = []
    thread = threading.Thread(
        target=lambda: statuses.append(refresh(fake, refresh_token).status_code)
    )
    thread.start()
    assert fake.wait_for_token_calls(1)
    started = time.monotonic()
    fake.stop()
    thread.join(timeout=3)
    assert time.monotonic() - started < 1.0
    assert statuses == [504]


def test_fail_next_count_clear_and_validation(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("503", count=2)
    assert refresh(provider, refresh_token).status_code == 503
    assert refresh(provider, refresh_token).status_code == 503
    assert refresh(provider, refresh_token).status_code == 200
    provider.fail_next("500", count=3)
    provider.clear_faults()
    assert refresh(provider, refresh_token).status_code == 200
    with pytest.raises(ValueError, match="unknown fault mode"):
        provider.fail_next("404")


def test_latency_delays_token_answers(provider: FakeProvider) -> None:
    provider.latency = 0.1
    _, refresh_token = provider.issue_tokens_directly()
    started = time.monotonic()
    assert refresh(provider, refresh_token).status_code == 200
    assert time.monotonic() - started >= 0.1


def test_trickle_fault_sends_a_good_answer_one_byte_at_a_time(provider: FakeProvider) -> None:
    provider.trickle_interval = 0.002
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("trickle")
    response = requests.post(
        provider.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(provider.client_id, provider.client_secret),
        timeout=TIMEOUT,
        stream=True,
    )
    pieces = []
    while piece := response.raw.read1(4096):
        pieces.append(piece)
    body = b"".join(pieces)
    assert response.status_code == 200
    assert len(pieces) > len(body) // 2  # it came in dribs, not in one write
    assert provider.is_access_token_valid(json.loads(body)["access_token"])
    assert refresh(provider, refresh_token).status_code == 200  # the presented token is unspent


def test_trickle_headers_fault_sends_its_status_line_and_headers_one_byte_at_a_time(
    provider: FakeProvider,
) -> None:
    provider.trickle_interval = 0.002
    _, refresh_token = provider.issue_tokens_directly()
    provider.fail_next("trickle_headers")
    form = f"grant_type=refresh_token&refresh_token={refresh_token}".encode()
    credentials = base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode())
    request = (
        f"POST /v1/access_token HTTP/1.1\r\nHost: {provider.host}\r\n"
        f"Authorization: Basic {credentials.decode()}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n"
    ).encode() + form
    pieces = []
    with socket.create_connection((provider.host, provider.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        while piece := sock.recv(4096):
            pieces.append(piece)
    answer = b"".join(pieces)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert len(pieces) > len(head) // 2  # the head came in dribs, not in one write
    assert provider.is_access_token_valid(json.loads(body)["access_token"])
    assert refresh(provider, refresh_token).status_code == 200  # the presented token is unspent


def test_answer_overrides_go_into_every_token_answer_as_given(provider: FakeProvider) -> None:
    provider.answer_overrides = {"expires_in": 1e30, "token_type": "x" * 40, "scope": ["a"]}
    code, verifier = get_code(provider)
    exchanged = exchange(provider, code, verifier).json()
    refreshed = refresh(provider, exchanged["refresh_token"]).json()
    for answer in (exchanged, refreshed):
        assert (answer["expires_in"], answer["token_type"], answer["scope"]) == (
            1e30, "x" * 40, ["a"],
        )  # fmt: skip


def test_records_count_only_grant_logic_and_reset(provider: FakeProvider) -> None:
    _, refresh_token = provider.issue_tokens_directly()
    bad_auth = requests.post(
        provider.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(provider.client_id, "wrong"),
        timeout=TIMEOUT,
    )
    assert bad_auth.status_code == 401
    assert refresh(provider, "unknown").status_code == 400
    assert provider.refresh_call_count() == 1
    provider.reset_records()
    assert provider.token_calls == []
    assert provider.refresh_call_count() == 0


def test_server_does_not_log_requests(provider: FakeProvider, capfd: pytest.CaptureFixture) -> None:
    access, _ = provider.issue_tokens_directly()
    people_me(provider, access)
    requests.get(provider.base_url + "/nowhere", timeout=TIMEOUT)
    assert capfd.readouterr().err == ""


def test_runs_as_a_script_until_sigterm() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "tokens.demo.provider", "--port", "0", "--client-id", "demo-id"]
    process = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    banner: list[str] = []
    try:
        assert process.stdout is not None
        # Read the banner before signalling: communicate() would skip text already buffered here.
        for line in iter(process.stdout.readline, ""):
            banner.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        base_url = banner[0].rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = requests.get(base_url + "/v1/people/me", timeout=TIMEOUT)
        assert response.status_code == 401
    finally:
        process.terminate()
        process.communicate(timeout=5)
    assert process.returncode == 0
    assert "  client id: demo-id\n" in banner
    assert not any("fake-client-secret" in line for line in banner)
