"""`make serve` as an operator runs it: granian + the cluster under production settings,
behind a TLS proxy (simulated by X-Forwarded-Proto), stopped together by Ctrl-C."""

import re
import signal
import subprocess
import sys
import time

import requests

from tests.test_deploy import ROOT, production_env
from tests.test_runconsole import STOP_DEADLINE, child_pids, free_port, live_members, manage

HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy adds

# A connected org with a valid token and an API client for it; prints the client's key.
SEED = """
from datetime import timedelta
from tokens import clock, services
from tokens.models import Integration, Org, Token, fingerprint
integration = Integration.objects.create(
    name="idp", provider="generic", client_id="c", client_secret="s",
    authorize_url="https://idp.example/authorize", token_url="https://idp.example/token")
org = Org.objects.create(name="Acme", slug="acme", integration=integration, status="connected")
now, access, refresh = clock.now(), "a" * 40, "r" * 40
Token.objects.create(
    org=org, access_token=access, refresh_token=refresh, obtained_at=now,
    access_fingerprint=fingerprint(access), refresh_fingerprint=fingerprint(refresh),
    access_expires_at=now + timedelta(days=14), next_refresh_at=now + timedelta(days=10))
print(services.api_client_create(name="flow", orgs=[org])[1])
"""
SERVED_TOTAL = (
    "from django.db.models import Sum; from tokens.models import TokenServedCount; "
    "print(TokenServedCount.objects.aggregate(n=Sum('count'))['n'])"
)


def test_serve_runs_granian_with_static_files_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(
        tmp_path,
        ALLOWED_HOSTS="127.0.0.1",
        CONSOLE_BASE_URL=base,
        # Served counts reach the database only when the workers stop, not on a timer.
        TOKEN_CONSOLE_API_SERVED_FLUSH_INTERVAL="600",
    )
    # The steps of `make serve`, in its order.
    assert "no issues" in manage(env, "check", "--deploy", "--fail-level", "WARNING")
    manage(env, "migrate", "--no-input")
    manage(env, "createcachetable")
    manage(env, "collectstatic", "--no-input")
    manage(env, "setup_schedules")
    key = manage(env, "shell", "-c", SEED).split()[-1]
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runconsole", "--server", "granian",
         "--addr", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    children: list[int] = []
    try:
        wait_until_served(f"{base}/healthz", server)
        login = requests.get(f"{base}/admin/login/", headers=HTTPS, timeout=5)
        assert login.status_code == 200
        assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert login.headers["X-Frame-Options"] == "DENY"
        hashed = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
        assert hashed, "the login page does not link the hashed (collected) stylesheet"
        css = requests.get(base + hashed[1], headers=HTTPS, timeout=5)
        assert css.status_code == 200
        assert "immutable" in css.headers["Cache-Control"]
        plain = requests.get(f"{base}/admin/login/", allow_redirects=False, timeout=5)
        assert plain.status_code == 301
        assert plain.headers["Location"] == f"https://127.0.0.1:{port}/admin/login/"
        api = {**HTTPS, "Authorization": f"Bearer {key}", "X-Forwarded-For": "127.0.0.1"}
        for _ in range(3):
            token = requests.get(f"{base}/api/v1/orgs/acme/token", headers=api, timeout=5)
            assert token.status_code == 200, token.text
        children = child_pids(server.pid)
        assert len(children) == 3  # granian, cluster, webhook cluster
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=STOP_DEADLINE)
    assert server.returncode == 0, output
    assert "Stopped." in output
    survivors = [pid for group in children for pid in live_members(group)]
    assert not survivors, "a process outlived Ctrl-C"
    # The granian workers wrote the counts they held when they were stopped.
    assert manage(env, "shell", "-c", SERVED_TOTAL).split()[-1] == "3"


def wait_until_served(url: str, process: subprocess.Popen, deadline: float = 30) -> None:
    """Poll the health check (plain http: it is exempt from the https redirect) until it
    answers (bounded), failing early if the server died."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, "runconsole exited before it served"
        try:
            health = requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.1)  # readiness poll of a child process, not a test of time
            continue
        assert health.status_code in (200, 503)  # 503 until the cluster's first task
        assert health.json()["database"] == {"ok": True}
        return
    raise AssertionError(f"{url} did not answer within {deadline} s")
