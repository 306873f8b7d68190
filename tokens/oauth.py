"""The OAuth2 client protocol: authorize URL, code exchange, refresh, userinfo, revocation.

Speaks HTTP only and knows no models. Every call has a timeout and a total deadline;
every provider error becomes a ProviderError subclass whose message holds no secret. A
token answer is checked field by field before anyone stores it: what cannot be stored is
refused, what is merely absurd is clamped and noted in `TokenResponse.warnings`.
"""

import base64
import hashlib
import ipaddress
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import requests
import urllib3

from . import http_deadline
from .exceptions import (
    InvalidClient,
    InvalidGrant,
    ProviderError,
    ProviderResponseInvalid,
    ProviderUnavailable,
)
from .retry_after import retry_after_seconds

CLIENT_SECRET_POST = "client_secret_post"
CLIENT_SECRET_BASIC = "client_secret_basic"
AUTH_METHODS = (CLIENT_SECRET_POST, CLIENT_SECRET_BASIC)
# How a provider takes a revocation: Webex deletes the authorization behind a bearer
# access token (DELETE /v1/authorizations); RFC 7009 posts the token with client auth.
REVOKE_BEARER_DELETE = "bearer_delete"
REVOKE_RFC7009 = "rfc7009"

_DESCRIPTION_MAX = 300
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# No token, userinfo or error answer comes near this; a larger body is broken or hostile.
_BODY_MAX_BYTES = 1024 * 1024
_READ_CHUNK = 16 * 1024
# A token is printable ASCII without spaces (RFC 6750's b64token and JWTs are), so it can
# travel in a header. Large JWTs stay far under this length; longer is broken or hostile.
_TOKEN_MAX_CHARS = 16 * 1024
_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{_TOKEN_MAX_CHARS}}}")
# A token_type is a name (RFC 6749 7.1) that fits Token.token_type (32 characters).
_TOKEN_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# Longest scope string kept; a longer one is cut at a space.
_SCOPE_MAX = 4000
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
    # Seconds from the start of a call to the last byte of its answer (HTTP_TOTAL_DEADLINE).
    total_deadline: float = 30.0
    # Longest token lifetime believed, in seconds (TOKEN_LIFETIME_MAX).
    max_lifetime: int = 365 * 24 * 3600
    # Longest Retry-After believed, in seconds (RETRY_AFTER_MAX).
    retry_after_max: float = 24 * 3600


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer. Secrets are kept out of repr()."""

    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str = field(default="", repr=False)
    expires_in: int | None = None
    refresh_token_expires_in: int | None = None
    scope: str = ""
    # What was wrong with the answer and was clamped or ignored (never a secret).
    warnings: tuple[str, ...] = ()


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
        raise _error_from_response(response, "userinfo", (access_token,), config)
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
        raise _error_from_response(response, "revocation", hidden, config)


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
        raise _error_from_response(response, "token", hidden, config)
    return _parse_token_response(response, config)


@dataclass(frozen=True)
class _Reply:
    """A provider's answer, read in full."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.content)


def _send(method: str, url: str, config: ClientConfig, **kwargs: Any) -> _Reply:
    """One request, answered in full within config.total_deadline, or ProviderUnavailable.

    The read timeout only bounds the wait for each piece of the answer, so a watchdog cuts
    the connection at the deadline (even while the status line and headers trickle in)
    and the body is streamed against the same deadline: a provider that trickles its
    answer cannot hold a refresh past its lease, when another caller would present the
    same refresh token.
    """
    session = getattr(_local, "session", None)
    if session is None:
        # One pooled session per thread: keep-alive matters when refreshing thousands.
        session = _local.session = http_deadline.watched_session()
    deadline = time.monotonic() + config.total_deadline
    try:
        with http_deadline.total_deadline(config.total_deadline) as guard:
            response = session.request(
                method, url, timeout=config.timeout, allow_redirects=False, stream=True, **kwargs
            )
            with response:  # closed, never pooled, when the body is not read to its end
                body = _read_body(response, deadline=deadline, url=url, config=config)
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        if guard.fired or time.monotonic() >= deadline:
            raise _deadline_passed(url, config) from None
        raise ProviderUnavailable(
            f"The provider did not answer within {config.timeout[1]:g} s ({_host(url)})."
        ) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if guard.fired:  # the watchdog cut the connection: that is the error seen here
            raise _deadline_passed(url, config) from None
        raise ProviderUnavailable(
            f"Could not reach the provider at {_host(url)}: {type(exc).__name__}."
        ) from None
    if guard.fired:  # cut while the body was read: what arrived may be incomplete
        raise _deadline_passed(url, config)
    return _Reply(response.status_code, response.headers, body)


def _read_body(
    response: requests.Response, *, deadline: float, url: str, config: ClientConfig
) -> bytes:
    """The whole body, chunk by chunk; cut off at the deadline or past _BODY_MAX_BYTES."""
    body = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _deadline_passed(url, config)
        # Each wait for data ends by the deadline too, not a whole read timeout later.
        sock = getattr(response.raw.connection, "sock", None)
        if sock is not None:
            sock.settimeout(min(remaining, config.timeout[1]))
        chunk = response.raw.read1(_READ_CHUNK, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > _BODY_MAX_BYTES:
            raise ProviderResponseInvalid(
                f"The provider's answer is larger than {_BODY_MAX_BYTES} bytes ({_host(url)}).",
                http_status=response.status_code,
            )


def _deadline_passed(url: str, config: ClientConfig) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"The provider did not finish answering within {config.total_deadline:g} s "
        f"({_host(url)}; HTTP_TOTAL_DEADLINE)."
    )


def _parse_token_response(response: _Reply, config: ClientConfig) -> TokenResponse:
    """Check every field of a 200 token answer: refuse what cannot be used, clamp the rest."""
    status = response.status_code
    payload = _json_object(response, "token")
    if payload is None:
        raise ProviderResponseInvalid(
            "The token endpoint answered 200 but not with JSON "
            f"(content type {response.headers.get('Content-Type', 'none')!r}).",
            http_status=status,
        )
    access_token = _token(payload, "access_token", status)
    if not access_token:
        raise ProviderResponseInvalid(
            "The token endpoint answered without an access_token.", http_status=status
        )
    warnings: list[str] = []
    return TokenResponse(
        access_token=access_token,
        token_type=_token_type(payload.get("token_type"), status),
        refresh_token=_token(payload, "refresh_token", status),
        expires_in=_lifetime(payload, "expires_in", config.max_lifetime, warnings),
        refresh_token_expires_in=_lifetime(
            payload, "refresh_token_expires_in", config.max_lifetime, warnings
        ),
        scope=_scope(payload.get("scope"), warnings),
        warnings=tuple(warnings),
    )


def _token(payload: dict[str, Any], name: str, status: int) -> str:
    """An access or refresh token from the answer; "" when absent or not a string."""
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        return ""
    if not _TOKEN.fullmatch(value):
        raise ProviderResponseInvalid(
            f"The token endpoint answered an unusable {name} (longer than {_TOKEN_MAX_CHARS} "
            "characters, or with spaces or characters outside printable ASCII).",
            http_status=status,
        )
    return value


def _token_type(value: Any, status: int) -> str:
    """The token type, Bearer when absent; ProviderResponseInvalid when it cannot be stored."""
    if value is None or value == "":
        return "Bearer"
    if isinstance(value, str) and _TOKEN_TYPE.fullmatch(value):
        return value
    raise ProviderResponseInvalid(
        "The token endpoint answered an unusable token_type (not a name of at most 32 "
        "letters, digits, '.', '_' or '-').",
        http_status=status,
    )


def _lifetime(payload: dict[str, Any], name: str, maximum: int, warnings: list[str]) -> int | None:
    """A lifetime in seconds: None when absent or unusable, at most `maximum` (with a warning)."""
    if payload.get(name) is None:
        return None
    seconds = _seconds(payload[name])
    if seconds is None:
        warnings.append(f"The provider's {name} is not a positive number of seconds: ignored.")
        return None
    if seconds > maximum:
        # Floats as 1e+30; integers as they are, up to a length (a float cannot hold all).
        shown = f"{seconds:.3g}" if isinstance(seconds, float) else str(seconds)
        shown = shown if len(shown) <= 20 else f"a {len(shown)}-digit number of"
        warnings.append(
            f"The provider's {name} of {shown} s is beyond the maximum: clamped to "
            f"{maximum} s (TOKEN_LIFETIME_MAX)."
        )
        return maximum
    return seconds if isinstance(seconds, int) else math.ceil(seconds)


def _seconds(value: Any) -> int | float | None:
    """A positive, finite number from a JSON number or numeric string; None otherwise."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if text.isdigit() else float(text)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value > 0 else None


def _scope(value: Any, warnings: list[str]) -> str:
    """The granted scope; cut at a space past _SCOPE_MAX characters, "" when not a string."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        warnings.append("The provider's scope is not a string: ignored.")
        return ""
    if len(value) > _SCOPE_MAX:
        warnings.append(f"The provider's scope is longer than {_SCOPE_MAX} characters: cut.")
        return value[:_SCOPE_MAX].rsplit(" ", 1)[0]
    return value


def _error_from_response(
    response: _Reply, endpoint: str, hidden: tuple[str, ...], config: ClientConfig
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
            retry_after=_retry_after(response, config),
        )
    return ProviderError(
        f"The {endpoint} endpoint answered HTTP {status}{detail}.",
        error_code=code,
        http_status=status,
        description=description,
    )


def _json_object(response: _Reply, endpoint: str) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    return payload if isinstance(payload, dict) else None


def _retry_after(response: _Reply, config: ClientConfig) -> float | None:
    """Seconds from a Retry-After header (ASCII delta-seconds or an HTTP date), at most
    the config's retry_after_max; None when absent or malformed."""
    raw = response.headers.get("Retry-After")
    return retry_after_seconds(raw, maximum=config.retry_after_max)


def _scrub(text: str, hidden: tuple[str, ...]) -> str:
    """Cut provider text to size and blank out anything we sent that is secret."""
    for secret in hidden:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_DESCRIPTION_MAX]


def _host(url: str) -> str:
    return urlsplit(url).netloc or "an unset URL"
