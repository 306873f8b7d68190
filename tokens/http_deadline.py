"""A total deadline for a whole HTTP call through requests, not only per read.

requests' read timeout bounds each wait for data, so a server that sends its status line
and headers one byte at a time holds a call for as long as it likes, and requests gives no
handle on the socket before the headers have arrived. The sessions made here use urllib3
connections that hand their socket to the watchdog of the call running in the same
thread; when the deadline passes, the watchdog's timer shuts that socket down, and the
blocked read returns at once with an error that the caller maps by `Watchdog.fired`.

The watchdog keeps its own duplicate of each socket (one more file descriptor for the
length of the call): it can shut the connection down whatever urllib3 or ssl do with the
original meanwhile (wrap it in TLS, close it, pool it), and never touches a descriptor
number that was closed and reused.
"""

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection

_local = threading.local()


class Watchdog:
    """Shuts down the sockets of one call when its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down too when the deadline passes (at once, if it has)."""
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        except OSError:
            return  # already closed: nothing left to wait on
        with self._lock:
            self._sockets.append(duplicate)
            if self.fired:
                _shut_down(duplicate)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shut_down(sock)

    def _stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected yet, or already gone
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def total_deadline(seconds: float) -> Iterator[Watchdog]:
    """Cut the connections of this thread's watched_session() calls after `seconds`."""
    watchdog = Watchdog(seconds)
    _local.watchdog = watchdog
    watchdog._timer.start()
    try:
        yield watchdog
    finally:
        _local.watchdog = None
        watchdog._stop()


def _watch(sock: socket.socket | None) -> None:
    watchdog = getattr(_local, "watchdog", None)
    if watchdog is not None and sock is not None:
        watchdog.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    """An urllib3 connection that hands its socket to the running call's watchdog."""

    def _new_conn(self) -> socket.socket:
        # The raw socket, before any TLS handshake: a trickled handshake is cut off too.
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)  # a pooled connection, reused without a _new_conn
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The TLS kind of _WatchedHTTPConnection."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose pools (direct or through an HTTP proxy) make watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # SOCKS proxies keep their own pools
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def watched_session() -> requests.Session:
    """A requests Session whose calls inside total_deadline() end by that deadline."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
