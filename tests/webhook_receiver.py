"""A webhook receiver on 127.0.0.1 for tests: checks signatures, answers as told."""

import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class WebhookReceiver:
    """Records every POST, verifies X-TokenConsole-Signature with `secrets`, and answers
    with the statuses queued in `answers` (then 200)."""

    secrets: list[str] = field(default_factory=list)
    answers: deque = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (a slow receiver)
    _server: Any = None

    def start(self) -> "WebhookReceiver":
        """Serve on a free port of 127.0.0.1 in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                ok = receiver.verify(headers.get("X-TokenConsole-Signature", ""), body)
                receiver.received.append(Received(headers, body, ok))
                time.sleep(receiver.delay)  # a slow receiver, in its own thread
                status, extra = receiver.answers.popleft() if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        """Where to deliver."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/token-console"

    def verify(self, header: str, body: bytes) -> bool:
        """Whether one v1 signature matches HMAC-SHA256("<t>.<body>") with a known secret."""
        parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
        timestamp = next((v for k, v in parts if k == "t"), "")
        signatures = [v for k, v in parts if k == "v1"]
        for secret in self.secrets:
            signed = f"{timestamp}.".encode() + body
            expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            if any(hmac.compare_digest(expected, s) for s in signatures):
                return True
        return False
