"""A fake, Webex-shaped OAuth2 provider served over real HTTP on localhost, for tests and demos.

Standard library only and Django-free, so it can run inside a test process, as a script for
``make demo`` (``python -m tokens.demo.provider``), or anywhere else without settings.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

AUTHORIZE_PATH = "/v1/authorize"
TOKEN_PATH = "/v1/access_token"
USERINFO_PATH = "/v1/people/me"
REVOKE_PATH = "/v1/authorizations"
RFC7009_REVOKE_PATH = "/v1/revoke"
MESSAGES_PATH = "/v1/messages"  # Webex messages: the console's alerts to a space
KNOWN_PATHS = frozenset(
    {AUTHORIZE_PATH, TOKEN_PATH, USERINFO_PATH, REVOKE_PATH, RFC7009_REVOKE_PATH}
)

DEFAULT_ORG_ID = "1eb65fdf-9643-417f-9974-ad72cae0e10f"
DEFAULT_REFRESH_SCOPE = "spark:people_read"
CODE_LIFETIME_SECONDS = 600
FAULT_MODES = frozenset(
    {"500", "502", "503", "429", "timeout", "html", "no_access_token", "invalid_grant"}
    | {"invalid_client", "reset", "trickle", "trickle_headers"}
)


def webex_id(kind: str, raw_uuid: str) -> str:
    """Encode a uuid the way Webex API ids do: unpadded base64url of ciscospark://us/KIND/uuid."""
    raw = f"ciscospark://us/{kind}/{raw_uuid}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def pkce_challenge(verifier: str) -> str:
    """Return the S256 code_challenge for a PKCE code_verifier (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _random_token() -> str:
    # "_" separates the fields of a Webex access token, so keep it out of the random part.
    return secrets.token_urlsafe(48).replace("_", "A")


def _append_query(url: str, params: dict[str, str]) -> str:
    # Append verbatim so the client's own query parameters come back byte for byte.
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _presented_credentials(
    form: dict[str, str], authorization: str | None
) -> tuple[str | None, str | None, str | None]:
    """Return (auth_method, client_id, client_secret) as presented, without judging them."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return "client_secret_basic", None, None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return "client_secret_basic", None, None
        # RFC 6749 2.3.1: both halves are form-urlencoded before being joined.
        return "client_secret_basic", unquote_plus(client_id), unquote_plus(secret)
    if "client_secret" in form:
        return "client_secret_post", form.get("client_id"), form["client_secret"]
    return None, form.get("client_id"), None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # hold the answer this long; stop() cuts the wait short
    trickle: float = 0.0  # send the body one byte per this many seconds
    trickle_head: float = 0.0  # send the status line and headers one byte per this many seconds
    reset: bool = False  # close the connection without writing anything
    error: str | None = None  # the OAuth2 error code, kept for the call records


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> _Response:
    base = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}
    return _Response(status, json.dumps(payload).encode(), {**base, **(headers or {})})


def _oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> _Response:
    response = _json(status, {"error": error, "error_description": description}, headers)
    response.error = error
    return response


def _text(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> _Response:
    return _Response(status, text.encode(), {"Content-Type": content_type})


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scope: str
    expires_at: float


@dataclass
class _Grant:
    """One user consent: a current refresh token plus every access token minted from it."""

    client_id: str
    scope: str
    refresh_token: str
    refresh_expires_at: float
    access_expiry: dict[str, float] = field(default_factory=dict)
    used_refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False


class FakeProvider:
    """Fake Webex OAuth2 provider: authorize, token, people/me and revocation endpoints."""

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        org_id: str = DEFAULT_ORG_ID,
        cluster_id: str = "P0A1",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.port = port
        self.org_id = org_id
        self.cluster_id = cluster_id
        self.person_id = webex_id("PEOPLE", str(uuid.uuid4()))
        # Knobs that tests flip directly; every request reads their current value.
        self.expires_in = 1209600
        self.refresh_token_expires_in = 7776000
        self.include_expires_in = True
        self.include_refresh_token = True
        self.rotate_refresh_tokens = False
        self.reuse_detection = False
        self.require_pkce = True
        self.latency = 0.0
        self.scope: str | None = None
        self.userinfo_org_id: str | None = None
        self.authorize_error: str | None = None
        self.hang_seconds = 5.0
        # The "trickle" fault sends its body, "trickle_headers" its status line and headers,
        # one byte per this many seconds.
        self.trickle_interval = 0.1
        # Fields set in every token answer as given, whatever their type (absurd expires_in,
        # over-long token_type or scope, ...): the client's checks are tested through them.
        self.answer_overrides: dict[str, Any] = {}
        # One lock guards all mutable state; the condition lets tests wait for requests.
        self._lock = threading.Lock()
        self._records_changed = threading.Condition(self._lock)
        self._faults: deque[tuple[str, int | str | None]] = deque()
        self._codes: dict[str, _Code] = {}
        self._grants_by_access: dict[str, _Grant] = {}
        self._grants_by_refresh: dict[str, _Grant] = {}
        self._token_calls: list[dict[str, Any]] = []
        self._token_arrivals = 0
        self._authorize_calls: list[dict[str, str]] = []
        self._revoke_calls: list[dict[str, Any]] = []
        self._messages: list[dict[str, Any]] = []
        # The bot token POST /v1/messages accepts; `messages_status` forces an answer.
        self.bot_token = "fake-bot-token"
        self.messages_status: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Bind (port 0 picks a free port) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeProvider is already running")
        self._stopping = threading.Event()
        server = _Server((self.host, self.port), _Handler)
        server.provider = self
        # Remember the bound port so a restart keeps the same URLs.
        self.port = server.server_address[1]
        self._server = server
        # A short poll interval keeps stop() (and so every test fixture) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.name = f"fake-provider:{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving promptly, releasing requests held by latency or a "timeout" fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:8765 (needs a started provider when port=0)."""
        if self.port == 0:
            raise RuntimeError("start() the FakeProvider first: port 0 is not bound yet")
        return f"http://{self.host}:{self.port}"

    @property
    def authorize_url(self) -> str:
        """Full URL of the authorize endpoint."""
        return self.base_url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        """Full URL of the token endpoint."""
        return self.base_url + TOKEN_PATH

    @property
    def userinfo_url(self) -> str:
        """Full URL of people/me."""
        return self.base_url + USERINFO_PATH

    @property
    def revoke_url(self) -> str:
        """Full URL of the Webex-style DELETE /v1/authorizations revocation endpoint."""
        return self.base_url + REVOKE_PATH

    # -- faults and records ------------------------------------------------------------------

    def fail_next(self, mode: str, count: int = 1, *, retry_after: int | str | None = None) -> None:
        """Make the next `count` token-endpoint requests answer with fault `mode`.

        `retry_after` goes into the Retry-After header of a 429 or 503 as given (a string
        is sent as its latin-1 bytes, however odd).
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {sorted(FAULT_MODES)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.extend([(mode, retry_after)] * count)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    @property
    def token_calls(self) -> list[dict[str, Any]]:
        """Snapshot of token requests: grant_type, auth_method, refresh_token, outcome, at."""
        with self._lock:
            return [dict(call) for call in self._token_calls]

    @property
    def authorize_calls(self) -> list[dict[str, str]]:
        """Snapshot of the query parameters of every authorize request."""
        with self._lock:
            return [dict(call) for call in self._authorize_calls]

    @property
    def revoke_calls(self) -> list[dict[str, Any]]:
        """Snapshot of revocation requests: endpoint, outcome, at."""
        with self._lock:
            return [dict(call) for call in self._revoke_calls]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Snapshot of POST /v1/messages: authorization, json body, status answered."""
        with self._lock:
            return [dict(message) for message in self._messages]

    def refresh_call_count(self) -> int:
        """Refresh-token grants that reached a fault or the grant logic (not client-auth errors)."""
        with self._lock:
            return sum(
                1
                for call in self._token_calls
                if call["grant_type"] == "refresh_token"
                and call["outcome"] not in ("invalid_client", "invalid_request")
            )

    def wait_for_token_calls(self, count: int, timeout: float = 2.0) -> bool:
        """Block until at least `count` token requests were recorded; False on timeout."""
        with self._records_changed:
            return self._records_changed.wait_for(lambda: len(self._token_calls) >= count, timeout)

    def wait_for_token_arrivals(self, count: int, timeout: float = 2.0) -> bool:
        """Block until `count` token requests have arrived (before latency); False on timeout."""
        with self._records_changed:
            return self._records_changed.wait_for(lambda: self._token_arrivals >= count, timeout)

    def _note_token_arrival(self) -> None:
        with self._records_changed:
            self._token_arrivals += 1
            self._records_changed.notify_all()

    def reset_records(self) -> None:
        """Forget recorded calls (tokens, codes and faults are kept)."""
        with self._lock:
            self._token_calls.clear()
            self._token_arrivals = 0
            self._authorize_calls.clear()
            self._revoke_calls.clear()
            self._messages.clear()

    # -- direct state access for tests -------------------------------------------------------

    def is_access_token_valid(self, token: str) -> bool:
        """True if `token` was issued, is unexpired and its grant is not revoked."""
        with self._lock:
            return self._live_grant_for_access(token, time.monotonic()) is not None

    def current_refresh_token_for(self, access_token: str) -> str | None:
        """The refresh token currently valid for the grant that minted `access_token`."""
        with self._lock:
            grant = self._grants_by_access.get(access_token)
            if grant is None or grant.revoked:
                return None
            return grant.refresh_token

    def issue_tokens_directly(self, scope: str = DEFAULT_REFRESH_SCOPE) -> tuple[str, str]:
        """Return a fresh (access, refresh) pair as if a code exchange had just happened."""
        with self._lock:
            now = time.monotonic()
            grant = self._new_grant(scope, now)
            return self._new_access_token(grant, now), grant.refresh_token

    def revoke_token(self, token: str) -> bool:
        """Revoke the grant behind an access or refresh token, as a Webex admin could."""
        with self._lock:
            grant = self._grants_by_access.get(token) or self._grants_by_refresh.get(token)
            if grant is None:
                return False
            grant.revoked = True
            return True

    # -- internals (called with the lock held unless noted) ----------------------------------

    def _handle_message(self, authorization: str | None, body: Any) -> _Response:
        """POST /v1/messages (Webex): a bot posts Markdown to a space. Recorded."""
        response = _message_answer(self, authorization, body)
        with self._lock:
            self._messages.append(
                {"authorization": authorization, "json": body, "status": response.status}
            )
        return response

    def _pause(self, seconds: float) -> None:
        # Waiting on the stop event instead of sleeping lets stop() release held requests.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _new_grant(self, scope: str, now: float) -> _Grant:
        grant = _Grant(
            client_id=self.client_id,
            scope=scope,
            refresh_token=_random_token(),
            refresh_expires_at=now + self.refresh_token_expires_in,
        )
        self._grants_by_refresh[grant.refresh_token] = grant
        return grant

    def _new_access_token(self, grant: _Grant, now: float) -> str:
        token = f"{_random_token()}_{self.cluster_id}_{self.org_id}"
        grant.access_expiry[token] = now + self.expires_in
        self._grants_by_access[token] = grant
        return token

    def _live_grant_for_access(self, token: str | None, now: float) -> _Grant | None:
        grant = self._grants_by_access.get(token or "")
        if grant is None or grant.revoked or grant.access_expiry[token or ""] <= now:
            return None
        return grant

    def _record_token_call(
        self, grant_type: str | None, auth_method: str | None, refresh: str | None, outcome: str
    ) -> None:
        call = {
            "grant_type": grant_type,
            "auth_method": auth_method,
            "refresh_token": refresh,
            "outcome": outcome,
            "at": time.monotonic(),
        }
        self._token_calls.append(call)
        self._records_changed.notify_all()

    def _token_payload(self, access: str, grant: _Grant, *, with_refresh: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"access_token": access}
        if self.include_expires_in:
            payload["expires_in"] = self.expires_in
        if with_refresh:
            payload["refresh_token"] = grant.refresh_token
            if self.include_expires_in:
                payload["refresh_token_expires_in"] = self.refresh_token_expires_in
        payload["token_type"] = "Bearer"
        payload["scope"] = self.scope if self.scope is not None else grant.scope
        return {**payload, **self.answer_overrides}

    def _fault_response(self, mode: str, retry_after: int | str | None) -> _Response:
        match mode:
            case "503" if retry_after is not None:
                response = _text(503, "fake provider fault 503")
                response.headers["Retry-After"] = str(retry_after)
                return response
            case "500" | "502" | "503":
                return _text(int(mode), f"fake provider fault {mode}")
            case "429":
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return _json(429, {"message": "Too Many Requests"}, headers)
            case "timeout":
                return _Response(
                    504, b"Gateway Timeout", {"Content-Type": "text/plain"}, delay=self.hang_seconds
                )
            case "html":
                return _text(200, "<html>Service Unavailable</html>", "text/html; charset=utf-8")
            case "no_access_token":
                return _json(200, {"token_type": "Bearer", "expires_in": self.expires_in})
            case "invalid_grant":
                return _oauth_error(400, "invalid_grant", "Injected fault.")
            case "invalid_client":
                return _oauth_error(401, "invalid_client", "Injected fault.")
            case "trickle" | "trickle_headers":
                # A good answer (from a fresh grant: the presented token is not spent),
                # its body or its head one byte every trickle_interval seconds: each read
                # of the client is quick, the whole answer takes long.
                now = time.monotonic()
                grant = self._new_grant(DEFAULT_REFRESH_SCOPE, now)
                access = self._new_access_token(grant, now)
                response = _json(200, self._token_payload(access, grant, with_refresh=True))
                if mode == "trickle":
                    response.trickle = self.trickle_interval
                else:
                    response.trickle_head = self.trickle_interval
                return response
            case _:  # "reset"
                return _Response(0, reset=True)

    def _authenticate(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[str | None, _Response | None]:
        """Return (auth_method, error); error is None when the client proved who it is."""
        method, client_id, secret = _presented_credentials(form, authorization)
        challenge = {"WWW-Authenticate": 'Basic realm="fake-webex"'} if method else {}
        if method == "client_secret_basic" and "client_secret" in form:
            # RFC 6749 2.3: a client must not use more than one authentication method.
            return method, _oauth_error(400, "invalid_request", "Use one client auth method.")
        if method == "client_secret_basic" and form.get("client_id") not in (None, client_id):
            return method, _oauth_error(401, "invalid_client", "client_id mismatch.", challenge)
        if method is None or secret is None or client_id != self.client_id:
            return method, _oauth_error(401, "invalid_client", "Unknown client.", challenge)
        if not secrets.compare_digest(secret.encode(), self.client_secret.encode()):
            return method, _oauth_error(401, "invalid_client", "Bad client secret.", challenge)
        return method, None

    def _exchange_code(self, form: dict[str, str], now: float) -> _Response:
        code_value = form.get("code", "")
        code = self._codes.get(code_value)
        if code is None:
            return _oauth_error(400, "invalid_grant", "Unknown or already used code.")
        if code.expires_at <= now:
            return _oauth_error(400, "invalid_grant", "Code expired.")
        if code.client_id != self.client_id or code.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant", "Code was issued to another client/redirect.")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier or pkce_challenge(verifier) != code.code_challenge:
                return _oauth_error(400, "invalid_grant", "PKCE verification failed.")
        # Only a successful exchange burns the code; a failed attempt leaves it usable.
        del self._codes[code_value]
        grant = self._new_grant(code.scope, now)
        access = self._new_access_token(grant, now)
        return _json(200, self._token_payload(access, grant, with_refresh=True))

    def _refresh(self, presented: str, now: float) -> _Response:
        grant = self._grants_by_refresh.get(presented)
        if grant is None or grant.revoked or grant.client_id != self.client_id:
            return _oauth_error(400, "invalid_grant", "Unknown or revoked refresh token.")
        if presented in grant.used_refresh_tokens:
            if self.rotate_refresh_tokens and self.reuse_detection:
                # A replayed rotated token means it leaked: kill the whole grant.
                grant.revoked = True
                return _oauth_error(400, "invalid_grant", "Refresh token reuse; grant revoked.")
            return _oauth_error(400, "invalid_grant", "Refresh token already used.")
        if presented != grant.refresh_token or grant.refresh_expires_at <= now:
            return _oauth_error(400, "invalid_grant", "Refresh token expired.")
        access = self._new_access_token(grant, now)
        if not self.include_refresh_token:
            pass  # nothing new is handed out, so the presented token must stay valid
        elif self.rotate_refresh_tokens:
            grant.used_refresh_tokens.add(presented)
            grant.refresh_token = _random_token()
            grant.refresh_expires_at = now + self.refresh_token_expires_in
            self._grants_by_refresh[grant.refresh_token] = grant
        else:
            grant.refresh_expires_at = now + self.refresh_token_expires_in
        payload = self._token_payload(access, grant, with_refresh=self.include_refresh_token)
        if self.scope is None and not grant.scope and "scope" not in self.answer_overrides:
            payload["scope"] = DEFAULT_REFRESH_SCOPE
        return _json(200, payload)

    # -- endpoints (called by the handler without the lock) ----------------------------------

    def _handle_token(
        self, content_type: str, form: dict[str, str], authorization: str | None
    ) -> _Response:
        grant_type = form.get("grant_type")
        presented = form.get("refresh_token") if grant_type == "refresh_token" else None
        with self._lock:
            if self._faults:
                # Faults fire before any checks, so they never consume a code or refresh token.
                mode, retry_after = self._faults.popleft()
                method = _presented_credentials(form, authorization)[0]
                self._record_token_call(grant_type, method, presented, f"fault:{mode}")
                return self._fault_response(mode, retry_after)
            if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
                response = _oauth_error(400, "invalid_request", "Body must be form-urlencoded.")
                self._record_token_call(grant_type, None, presented, "invalid_request")
                return response
            method, error = self._authenticate(form, authorization)
            if error is not None:
                self._record_token_call(grant_type, method, presented, error.error or "?")
                return error
            now = time.monotonic()
            if grant_type == "authorization_code":
                response = self._exchange_code(form, now)
            elif grant_type == "refresh_token":
                response = self._refresh(presented or "", now)
            elif grant_type is None:
                response = _oauth_error(400, "invalid_request", "Missing grant_type.")
            else:
                response = _oauth_error(400, "unsupported_grant_type", f"{grant_type!r}.")
            outcome = response.error or "ok"
            self._record_token_call(grant_type, method, presented, outcome)
            return response

    def _handle_authorize(self, query: dict[str, str]) -> _Response:
        with self._lock:
            self._authorize_calls.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id:
            # Never redirect for an unknown client: that would make us an open redirector.
            return _text(400, "Unknown client_id.")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _text(400, "Missing or invalid redirect_uri.")
        state = {"state": query["state"]} if "state" in query else {}

        def back(params: dict[str, str]) -> _Response:
            return _Response(302, headers={"Location": _append_query(redirect_uri, params | state)})

        if self.authorize_error:
            return back({"error": self.authorize_error, "error_description": "Consent refused."})
        if query.get("response_type") != "code":
            return back({"error": "unsupported_response_type", "error_description": "Use code."})
        challenge = query.get("code_challenge")
        if (self.require_pkce or challenge) and (
            not challenge or query.get("code_challenge_method") != "S256"
        ):
            return back({"error": "invalid_request", "error_description": "PKCE S256 required."})
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                code_challenge=challenge,
                scope=query.get("scope", ""),
                expires_at=time.monotonic() + CODE_LIFETIME_SECONDS,
            )
        return back({"code": code})

    def _handle_userinfo(self, authorization: str | None) -> _Response:
        with self._lock:
            grant = self._live_grant_for_access(_bearer(authorization), time.monotonic())
        if grant is None:
            return _json(401, {"message": "invalid token"})
        org = self.userinfo_org_id or self.org_id
        return _json(
            200,
            {
                "id": self.person_id,
                "emails": ["admin@example.com"],
                "displayName": "Fake Admin",
                "orgId": webex_id("ORGANIZATION", org),
            },
        )

    def _handle_webex_revoke(self, authorization: str | None) -> _Response:
        with self._lock:
            grant = self._live_grant_for_access(_bearer(authorization), time.monotonic())
            outcome = "invalid_token" if grant is None else "ok"
            if grant is not None:
                grant.revoked = True
            self._revoke_calls.append(
                {"endpoint": REVOKE_PATH, "outcome": outcome, "at": time.monotonic()}
            )
        if grant is None:
            return _json(401, {"message": "invalid token"})
        return _Response(204)

    def _handle_rfc7009_revoke(self, form: dict[str, str], authorization: str | None) -> _Response:
        with self._lock:
            _, error = self._authenticate(form, authorization)
            outcome = "invalid_client" if error is not None else "ok"
            if error is None:
                token = form.get("token", "")
                grant = self._grants_by_access.get(token) or self._grants_by_refresh.get(token)
                # RFC 7009 2.2: unknown tokens still get 200, so callers learn nothing.
                if grant is not None and grant.client_id == self.client_id:
                    grant.revoked = True
            entry = {"endpoint": RFC7009_REVOKE_PATH, "outcome": outcome, "at": time.monotonic()}
            self._revoke_calls.append(entry)
        return error if error is not None else _Response(200)


def _message_answer(provider: FakeProvider, authorization: str | None, body: Any) -> _Response:
    if provider.messages_status is not None:
        return _json(provider.messages_status, {"message": "forced by the test"})
    if _bearer(authorization) != provider.bot_token:
        return _json(401, {"message": "The request requires a valid access token."})
    if not isinstance(body, dict) or not body.get("roomId") or not body.get("markdown"):
        return _json(400, {"message": "roomId and markdown are required."})
    return _json(200, {"id": str(uuid.uuid4()), "roomId": body["roomId"]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (timeouts, "reset" faults) are expected; report only real bugs.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "FakeWebex/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: access logs on stderr would clutter test output."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None

    def _read_form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        return dict(parse_qsl(body, keep_blank_values=True))

    def _dispatch(self, method: str) -> None:
        provider = self.server.provider
        parts = urlsplit(self.path)
        authorization = self.headers.get("Authorization")
        route = (method, parts.path)
        if route == ("GET", AUTHORIZE_PATH):
            response = provider._handle_authorize(
                dict(parse_qsl(parts.query, keep_blank_values=True))
            )
        elif route == ("POST", TOKEN_PATH):
            form = self._read_form()
            provider._note_token_arrival()
            provider._pause(provider.latency)
            response = provider._handle_token(
                self.headers.get("Content-Type", ""), form, authorization
            )
        elif route == ("GET", USERINFO_PATH):
            response = provider._handle_userinfo(authorization)
        elif route == ("DELETE", REVOKE_PATH):
            response = provider._handle_webex_revoke(authorization)  # ?clientId= is ignored
        elif route == ("POST", RFC7009_REVOKE_PATH):
            response = provider._handle_rfc7009_revoke(self._read_form(), authorization)
        elif route == ("POST", MESSAGES_PATH):
            response = provider._handle_message(authorization, self._read_json())
        elif parts.path in KNOWN_PATHS:
            response = _json(405, {"message": "method not allowed"})
        else:
            response = _json(404, {"message": "not found"})
        self._send(response)

    def _send(self, response: _Response) -> None:
        self.server.provider._pause(response.delay)
        if response.reset:
            # Write nothing; the server closes the socket, so the client sees a dropped connection.
            self.close_connection = True
            return
        if response.trickle_head:
            if self._dribble(self._head(response), response.trickle_head):
                self.wfile.write(response.body)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not response.trickle:
            self.wfile.write(response.body)
            return
        self._dribble(response.body, response.trickle)

    def _head(self, response: _Response) -> bytes:
        """The status line and headers as send_response() and end_headers() would write them."""
        reason = self.responses.get(response.status, ("",))[0]
        lines = [f"{self.protocol_version} {response.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        lines.append(f"Content-Length: {len(response.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _dribble(self, data: bytes, interval: float) -> bool:
        """Write `data` one byte per `interval` seconds; False when stop() cut it short."""
        for offset in range(len(data)):
            self.server.provider._pause(interval)
            if self.server.provider._stopping.is_set():
                return False
            self.wfile.write(data[offset : offset + 1])
            self.wfile.flush()
        return True


def main(argv: list[str] | None = None) -> int:
    """Serve a FakeProvider until SIGINT/SIGTERM (used by `make demo`)."""
    parser = argparse.ArgumentParser(
        prog="python -m tokens.demo.provider", description="Fake Webex OAuth2 provider."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-id", default="fake-client-id")
    parser.add_argument("--client-secret", default="fake-client-secret")
    parser.add_argument("--org-id", default=DEFAULT_ORG_ID)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per token answer")
    args = parser.parse_args(argv)

    provider = FakeProvider(
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        org_id=args.org_id,
    )
    provider.latency = args.latency
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with provider:
        print(f"Fake Webex OAuth2 provider on {provider.base_url}", flush=True)
        print(f"  authorize: {provider.authorize_url}")
        print(f"  token:     {provider.token_url}")
        print(f"  userinfo:  {provider.userinfo_url}")
        print(f"  revoke:    {provider.revoke_url}")
        print(f"  client id: {provider.client_id}")
        print("  secret:    as given on the command line")
        print("Press Ctrl+C to stop.", flush=True)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not done.wait(0.5):
            pass
    print("Fake provider stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
