"""The OAuth2 client protocol: authorize URL, code exchange, refresh, userinfo, revocation.

Speaks HTTP only and knows no models. Every call has a timeout; every provider
error becomes a ProviderError subclass whose message holds no secret.
"""

import base64
import hashlib
import ipaddress
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import requests

from .exceptions import (
    InvalidClient,
    InvalidGrant,
    ProviderError,
    ProviderResponseInvalid,
    ProviderUnavailable,
)

CLIENT_SECRET_POST = "client_secret_post"
CLIENT_SECRET_BASIC = "client_secret_basic"
AUTH_METHODS = (CLIENT_SECRET_POST, CLIENT_SECRET_BASIC)
# How a provider takes a revocation: Webex deletes the authorization behind a bearer
# access token (DELETE /v1/authorizations); RFC 7009 posts the token with client auth.
REVOKE_BEARER_DELETE = "bearer_delete"
REVOKE_RFC7009 = "rfc7009"

_DESCRIPTION_MAX = 300
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_local = threading.local()


def plain_http_off_loopback(url: str) -> bool:
    """Whether the URL is plain http to another machine: what it carries crosses a network
    in clear. http to localhost or a loopback address (a local proxy, the tests) is not."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name other than localhost


@dataclass(frozen=True)
class ClientConfig:
    """One OAuth client registration, as the protocol needs it."""

    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str
    token_url: str
    userinfo_url: str = ""
    scopes: str = ""
    auth_method: str = CLIENT_SECRET_POST
    timeout: tuple[float, float] = (5.0, 15.0)
    revocation_url: str = ""
    revocation_style: str = REVOKE_RFC7009


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer. Secrets are kept out of repr()."""

    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str = field(default="", repr=False)
    expires_in: int | None = None
    refresh_token_expires_in: int | None = None
    scope: str = ""


@dataclass(frozen=True)
class PkcePair:
    """A PKCE code verifier (kept by us) and its S256 challenge (sent to the provider)."""

    verifier: str = field(repr=False)
    challenge: str


def make_pkce_pair() -> PkcePair:
    """Create a fresh PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return PkcePair(verifier=verifier, challenge=challenge)


def build_authorize_url(
    config: ClientConfig, *, redirect_uri: str, state: str, code_challenge: str
) -> str:
    """Return the provider URL that starts an authorization-code + PKCE flow."""
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": config.scopes,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    scheme, netloc, path, query, fragment = urlsplit(config.authorize_url)
    query = f"{query}&{urlencode(params)}" if query else urlencode(params)
    return urlunsplit((scheme, netloc, path, query, fragment))


def exchange_code(
    config: ClientConfig, *, code: str, redirect_uri: str, code_verifier: str
) -> TokenResponse:
    """Trade an authorization code for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    return _token_request(config, form, secrets_sent=(code, code_verifier))


def refresh(config: ClientConfig, *, refresh_token: str) -> TokenResponse:
    """Use a refresh token to get a new access token (and maybe a new refresh token)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(config, form, secrets_sent=(refresh_token,))


def fetch_userinfo(config: ClientConfig, *, access_token: str) -> dict[str, Any]:
    """GET the userinfo endpoint (Webex: people/me) with the access token."""
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    response = _send("GET", config.userinfo_url, config, headers=headers)
    if response.status_code != 200:
        raise _error_from_response(response, "userinfo", (access_token,))
    payload = _json_object(response, "userinfo")
    if payload is None:
        raise ProviderResponseInvalid(
            "The userinfo endpoint did not answer with a JSON object.",
            http_status=response.status_code,
        )
    return payload


def revoke(config: ClientConfig, *, access_token: str, refresh_token: str) -> None:
    """Revoke the org's grant at the provider's revocation endpoint; raise ProviderError if refused.

    Webex style: DELETE with the access token as bearer (2xx: done). RFC 7009: POST the
    refresh token (or the access token when there is none) with client authentication.
    """
    hidden = (access_token, refresh_token, config.client_secret)
    if config.revocation_style == REVOKE_BEARER_DELETE:
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        response = _send("DELETE", config.revocation_url, config, headers=headers)
    else:
        token, hint = (refresh_token, "refresh_token") if refresh_token else (access_token, "")
        form = {"token": token, **({"token_type_hint": hint} if hint else {})}
        headers, form = _client_auth(config, form)
        response = _send("POST", config.revocation_url, config, headers=headers, data=form)
    if not 200 <= response.status_code < 300:
        raise _error_from_response(response, "revocation", hidden)


def _client_auth(
    config: ClientConfig, form: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and form with the client's credentials, by its token endpoint auth method."""
    headers = {"Accept": "application/json"}
    if config.auth_method == CLIENT_SECRET_BASIC:
        # RFC 6749 2.3.1: both parts form-urlencoded before base64.
        pair = f"{quote_plus(config.client_id)}:{quote_plus(config.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return headers, form
    return headers, {**form, "client_id": config.client_id, "client_secret": config.client_secret}


def _token_request(
    config: ClientConfig, form: dict[str, str], *, secrets_sent: tuple[str, ...]
) -> TokenResponse:
    headers, form = _client_auth(config, form)
    response = _send("POST", config.token_url, config, headers=headers, data=form)
    hidden = (*secrets_sent, config.client_secret)
    if response.status_code != 200:
        raise _error_from_response(response, "token", hidden)
    return _parse_token_response(response)


def _send(method: str, url: str, config: ClientConfig, **kwargs: Any) -> requests.Response:
    session = getattr(_local, "session", None)
    if session is None:
        # One pooled session per thread: keep-alive matters when refreshing thousands.
        session = _local.session = requests.Session()
    try:
        return session.request(method, url, timeout=config.timeout, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise ProviderUnavailable(
            f"The provider did not answer within {config.timeout[1]:g} s ({_host(url)})."
        ) from None
    except requests.RequestException as exc:
        raise ProviderUnavailable(
            f"Could not reach the provider at {_host(url)}: {type(exc).__name__}."
        ) from None


def _parse_token_response(response: requests.Response) -> TokenResponse:
    payload = _json_object(response, "token")
    if payload is None:
        raise ProviderResponseInvalid(
            "The token endpoint answered 200 but not with JSON "
            f"(content type {response.headers.get('Content-Type', 'none')!r}).",
            http_status=response.status_code,
        )
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderResponseInvalid(
            "The token endpoint answered without an access_token.",
            http_status=response.status_code,
        )
    refresh_token = payload.get("refresh_token")
    return TokenResponse(
        access_token=access_token,
        token_type=str(payload.get("token_type") or "Bearer"),
        refresh_token=refresh_token if isinstance(refresh_token, str) else "",
        expires_in=_positive_int(payload.get("expires_in")),
        refresh_token_expires_in=_positive_int(payload.get("refresh_token_expires_in")),
        scope=str(payload.get("scope") or ""),
    )


def _error_from_response(
    response: requests.Response, endpoint: str, hidden: tuple[str, ...]
) -> ProviderError:
    status = response.status_code
    payload = _json_object(response, endpoint) or {}
    # An error code is an identifier (RFC 6749 5.2); anything else is not echoed anywhere.
    raw_code = str(payload.get("error") or "")
    code = raw_code if _ERROR_CODE.fullmatch(raw_code) else ("unrecognised" if raw_code else "")
    description = _scrub(
        str(payload.get("error_description") or payload.get("message") or ""), hidden
    )
    detail = f" ({code})" if code else ""
    if code == "invalid_grant":
        return InvalidGrant(
            f"The provider rejected the grant{detail}: reconnect the org.",
            error_code=code,
            http_status=status,
            description=description,
        )
    if code in {"invalid_client", "unauthorized_client"}:
        return InvalidClient(
            f"The provider rejected the client credentials{detail}: "
            "check the integration's client id and secret.",
            error_code=code,
            http_status=status,
            description=description,
        )
    if status == 429 or status >= 500:
        return ProviderUnavailable(
            f"The {endpoint} endpoint answered HTTP {status}{detail}.",
            error_code=code,
            http_status=status,
            description=description,
            retry_after=_retry_after(response),
        )
    return ProviderError(
        f"The {endpoint} endpoint answered HTTP {status}{detail}.",
        error_code=code,
        http_status=status,
        description=description,
    )


def _json_object(response: requests.Response, endpoint: str) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _scrub(text: str, hidden: tuple[str, ...]) -> str:
    """Cut provider text to size and blank out anything we sent that is secret."""
    for secret in hidden:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_DESCRIPTION_MAX]


def _host(url: str) -> str:
    return urlsplit(url).netloc or "an unset URL"
