"""Outbound HTTP to addresses that admins type in (webhook receivers), with an SSRF guard.

HTTP only, no models. A URL is accepted only when it is https and every address its
host resolves to is public; networks listed in WEBHOOK_ALLOW_PRIVATE_NETWORKS are
accepted too (and only there plain http). The check runs when the URL is saved and
again right before each delivery, and the connection goes to the address that was
checked, not to a second DNS answer: a name that resolves elsewhere later cannot
steer a delivery into the internal network. Redirects are never followed, and one
attempt has a total deadline, not only a per-read timeout.
"""

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .apikeys import Network, networks_parse
from .conf import app_settings
from .exceptions import UnsafeURL
from .retry_after import retry_after_seconds

# How much of a receiver's answer is read (and kept, cut, for the delivery log).
MAX_ANSWER_BYTES = 4096

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and what to say in the request line and Host."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


@dataclass(frozen=True)
class Answer:
    """What a receiver answered: status, Retry-After (seconds) and the start of the body."""

    status: int
    retry_after: float | None
    body: str


def allowed_private_networks() -> list[Network]:
    """The non-public networks webhook URLs may resolve to (WEBHOOK_ALLOW_PRIVATE_NETWORKS)."""
    return networks_parse(app_settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS)


def _unwrapped(ip: Address) -> Address:
    """An IPv4 address hidden in an IPv6 form (::ffff:a.b.c.d, 6to4, NAT64) as itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_is_public(ip: Address) -> bool:
    """Whether an address is globally routable unicast: not loopback, private, link-local
    (cloud metadata), unique-local, shared, multicast, reserved or unspecified."""
    ip = _unwrapped(ip)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(f"{host} does not resolve: check the webhook URL's host name.") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def url_check(url: str) -> Target:
    """Resolve `url` and return where to connect; raise UnsafeURL when it is not allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL("A webhook URL must be an https:// URL with a host name.")
    if parts.username or parts.password:
        raise UnsafeURL("A webhook URL must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("The webhook URL's port is not a number from 1 to 65535.") from None
    addresses = _resolve(parts.hostname, port)
    allowed = allowed_private_networks()
    listed = [any(_unwrapped(ip) in net or ip in net for net in allowed) for ip in addresses]
    for ip, is_listed in zip(addresses, listed, strict=True):
        if not is_listed and not address_is_public(ip):
            raise UnsafeURL(
                f"{parts.hostname} resolves to {ip}, which is not a public address. List its "
                "network in WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow an on-premise receiver."
            )
    if parts.scheme == "http" and not all(listed):
        raise UnsafeURL("A webhook URL must use https:// (http only to allowed private networks).")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, str(addresses[0]))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to a checked address, naming the URL's host in the Host header."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address; the certificate is verified against the URL's host."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_json(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to a checked `url` within WEBHOOK_TOTAL_TIMEOUT; raise OSError (incl.
    TimeoutError) on network trouble and UnsafeURL when the URL is no longer allowed."""
    target = url_check(url)
    deadline = time.monotonic() + app_settings.WEBHOOK_TOTAL_TIMEOUT
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = kind(target, timeout=app_settings.WEBHOOK_CONNECT_TIMEOUT)
    # The watchdog closes the socket at the deadline, so a receiver that drips its answer
    # a byte at a time cannot hold the worker past it (a read timeout alone would).
    expired = threading.Event()
    watchdog = threading.Timer(app_settings.WEBHOOK_TOTAL_TIMEOUT, _abort, (conn, expired))
    watchdog.start()
    connected = False
    try:
        conn.connect()
        connected = True
        conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        # A receiver's wish is believed up to a delivery's whole retry window.
        retry_after = retry_after_seconds(
            response.getheader("Retry-After"), maximum=app_settings.WEBHOOK_RETRY_HOURS * 3600
        )
        return Answer(response.status, retry_after, text)
    except (OSError, http.client.HTTPException) as exc:
        if connected and (expired.is_set() or isinstance(exc, TimeoutError)):
            raise TimeoutError("no complete answer within the total deadline") from None
        raise OSError(str(exc) or type(exc).__name__) from None
    finally:
        watchdog.cancel()
        conn.close()


def _abort(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
