"""Token API load: the real API under a production server, next to a bare WSGI view.

Seeds a fresh SQLite database with N connected orgs (tokens valid for two weeks, so
no refresh happens) and one API client scoped to all of them, then serves, in turn:

- `wsgi`:    a bare WSGI callable returning a constant token: the server's own ceiling;
- `django`:  a bare Django view returning a constant token, behind the console's
             settings, URLconf and middleware: what Django costs before any API work;
- `console`: the console itself, `GET /api/v1/orgs/<slug>/token` for a random org.

All run under the same server command, workers and threads, loaded by wrk (Debian's
package) with the same connections and request script; each round runs all three in
turn, so drift in a shared machine's load hits each. Prints req/s and p50/p99 per round,
the medians, and the console's throughput as a share of each baseline, per round.

    .venv/bin/python bench/token_api.py --orgs 1000 --connections 32 --duration 10 --rounds 3
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRK_SCRIPT = """
local slugs = {}
for i = 0, %(orgs)d - 1 do slugs[#slugs + 1] = "org-" .. i end
wrk.headers["Authorization"] = "Bearer %(key)s"
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/api/v1/orgs/" .. slugs[math.random(#slugs)] .. "/token")
end
"""


def configure(workdir: Path) -> dict[str, str]:
    """Production-like settings for this process and the server it starts."""
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "tokenconsole.settings",
        "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{workdir / 'api-bench.sqlite3'}",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    return {**os.environ, **env}


def seed(count: int) -> str:
    """Create `count` connected orgs with valid tokens and one client for all; return its key."""
    from tokens import clock, services
    from tokens.models import Integration, Org, Token, fingerprint

    integration = Integration.objects.create(
        name="bench", provider="webex", client_id="bench", client_secret="bench-secret",
        authorize_url="https://idp.example/authorize", token_url="https://idp.example/token",
    )  # fmt: skip
    orgs = Org.objects.bulk_create(
        Org(name=f"Org {n}", slug=f"org-{n}", integration=integration, status="connected",
            provider_org_id=f"00000000-0000-0000-0000-{n:012d}", cluster_id="P0A1")
        for n in range(count)
    )  # fmt: skip
    now = clock.now()
    tokens = []
    for org in orgs:
        access = f"{os.urandom(48).hex()}_P0A1_{org.provider_org_id}"
        refresh = os.urandom(48).hex()
        tokens.append(
            Token(
                org=org,
                access_token=access,
                refresh_token=refresh,
                access_fingerprint=fingerprint(access),
                refresh_fingerprint=fingerprint(refresh),
                obtained_at=now,
                access_expires_at=now + timedelta(days=14),
                next_refresh_at=now + timedelta(days=10),
            )
        )
    Token.objects.bulk_create(tokens, batch_size=500)
    _, key = services.api_client_create(name="bench", orgs=orgs)
    return key


TARGETS = {
    "wsgi": ("bench.bare_wsgi:application", "tokenconsole.settings"),
    "django": ("tokenconsole.wsgi:application", "bench.bare_django"),
    "console": ("tokenconsole.wsgi:application", "tokenconsole.settings"),
}


def server_command(args: argparse.Namespace, app: str, port: int) -> list[str]:
    """The production server serving `app` (module:callable) on 127.0.0.1:port."""
    bin_dir = Path(sys.executable).parent
    if args.server == "granian":
        return [
            str(bin_dir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(args.workers),
            "--blocking-threads", str(args.threads), "--no-ws", "--log-level", "warning", app,
        ]  # fmt: skip
    return [
        str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
        "--threads", str(args.threads), "--worker-class", "gthread", "--log-level", "warning",
        app,
    ]  # fmt: skip


def serve_and_load(args, env, target: str, url_check: str, lua: Path, port: int) -> dict:
    """Start the server, wait until it answers, run wrk once, stop the server."""
    from tokens.processes import start_group, stop_groups

    app, settings_module = TARGETS[target]
    env = {**env, "DJANGO_SETTINGS_MODULE": settings_module}
    server = start_group(server_command(args, app, port), cwd=ROOT, env=env, stdout=sys.stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url_check, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server on port {port} did not start") from None
                time.sleep(0.2)
        # Warm every worker (imports, connections, caches) before measuring.
        subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", "-d2s", "-s", str(lua),
             f"http://127.0.0.1:{port}"],
            check=True, capture_output=True,
        )  # fmt: skip
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
             "-s", str(lua), f"http://127.0.0.1:{port}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        stop_groups([server], timeout=5)
    return parse_wrk(out)


def parse_wrk(output: str) -> dict:
    """Requests/s, p50 and p99 (ms) and non-2xx count from wrk --latency output."""

    def ms(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if match is None:
            raise SystemExit(f"cannot read wrk's latency {text!r} in:\n{output}")
        value, unit = match.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = ms(re.search(r"^\s*50%\s+(\S+)", output, re.M).group(1))
    p99 = ms(re.search(r"^\s*99%\s+(\S+)", output, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {"rate": rate, "p50": p50, "p99": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> int:
    """Seed, run the rounds, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="tc-api-bench-"))
    env = configure(workdir)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)  # the API's failed-auth counts
    key = seed(args.orgs)
    lua = workdir / "token.lua"
    lua.write_text(WRK_SCRIPT % {"orgs": args.orgs, "key": key, "seed": 7})
    check = f"http://127.0.0.1:{args.port}/api/v1/orgs/org-0/token"

    results: dict[str, list[dict]] = {name: [] for name in TARGETS}
    for round_number in range(1, args.rounds + 1):
        for name in TARGETS:
            figures = serve_and_load(args, env, name, check, lua, args.port)
            results[name].append(figures)
            print(
                f"round {round_number} {name:8} {figures['rate']:8.0f} req/s  "
                f"p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms  "
                f"non-2xx {figures['non_2xx']}",
                flush=True,
            )

    print(
        f"server={args.server} workers={args.workers} threads={args.threads} "
        f"connections={args.connections} orgs={args.orgs} duration={args.duration}s "
        f"rounds={args.rounds}"
    )
    for name, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99")}
        print(
            f"median {name:8} {m['rate']:8.0f} req/s  p50 {m['p50']:6.2f} ms  "
            f"p99 {m['p99']:6.2f} ms"
        )
    for baseline in ("django", "wsgi"):
        ratios = [
            c["rate"] / b["rate"]
            for b, c in zip(results[baseline], results["console"], strict=True)
        ]
        print(
            f"console/{baseline} throughput: median {statistics.median(ratios):.2f} "
            f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    failed = sum(r["non_2xx"] for r in results["console"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
