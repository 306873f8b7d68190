"""Token API load: the console as `make serve` ships it, next to bare baselines.

Seeds a fresh SQLite database with N connected orgs (tokens valid for two weeks, so
no refresh happens) and one API client scoped to all of them (with a key and the
sample app's legacy headers), then serves, in turn:

- `wsgi`:    a bare WSGI callable returning a constant token: the server's own ceiling;
- `django`:  a bare Django view returning a constant token, behind the console's
             settings, URLconf and middleware: what Django costs before any API work;
- `console`: `GET /api/v1/orgs/<slug>/token` for a random org;
- `legacy`:  `GET /api/token` with the sample's headers for a random org (the drop-in
             that existing Flow Designer flows call).

The console (both endpoints) runs exactly as `make serve` runs it — `manage.py
runconsole --server granian`, cluster included, production settings behind a TLS proxy
(wrk sends X-Forwarded-Proto and X-Forwarded-For as the proxy would) — with the shipped
WEB_WORKERS / WEB_THREADS unless --workers / --threads override them. The baselines are
served by the same granian command line (`runconsole.web_command`). Each round runs every
target in turn, so drift in a shared machine's load hits each. Prints req/s and p50/p99
per round, the medians, and the ratios per round.

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

# What the TLS-terminating proxy in front of `make serve` adds to every request.
PROXY_HEADERS = """
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["X-Forwarded-For"] = "127.0.0.1"
math.randomseed(%(seed)d)
"""

V1_SCRIPT = """
local slugs = {}
for i = 0, %(orgs)d - 1 do slugs[#slugs + 1] = "org-" .. i end
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  return wrk.format("GET", "/api/v1/orgs/" .. slugs[math.random(#slugs)] .. "/token")
end
"""

LEGACY_SCRIPT = """
wrk.headers["X-From"] = "%(sender)s"
wrk.headers["X-API-Phrase"] = "%(passphrase)s"
request = function()
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["X-Organization-Id"] =
    string.format("00000000-0000-0000-0000-%%012d", math.random(%(orgs)d) - 1)
  return wrk.format("GET", "/api/token", headers)
end
"""
LEGACY_SENDER = "bench-flow"
LEGACY_PASSPHRASE = "bench legacy passphrase"


def configure(workdir: Path) -> dict[str, str]:
    """Production-like settings for this process and the server it starts."""
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "tokenconsole.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{workdir / 'api-bench.sqlite3'}",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONSOLE_BASE_URL": "https://127.0.0.1",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
        "TRUSTED_PROXY_COUNT": "1",
        "STATIC_ROOT": str(workdir / "static"),
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
            provider_org_id=org_id(n), cluster_id="P0A1")
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
    _, key = services.api_client_create(
        name="bench",
        orgs=orgs,
        legacy_from=LEGACY_SENDER,
        legacy_passphrase=LEGACY_PASSPHRASE,
    )
    return key


# target: (WSGI application, settings module), or None for the console as it ships.
BASELINES = {
    "wsgi": ("bench.bare_wsgi:application", "tokenconsole.settings"),
    "django": ("tokenconsole.wsgi:application", "bench.bare_django"),
}
TARGETS = ("wsgi", "django", "console", "legacy")


def console_command(args: argparse.Namespace, port: int) -> list[str]:
    """`make serve`'s last step: the shipped server and the cluster, through runconsole."""
    command = [sys.executable, str(ROOT / "manage.py"), "runconsole", "--server", "granian",
               "--addr", f"127.0.0.1:{port}"]  # fmt: skip
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


def baseline_command(args: argparse.Namespace, app: str, port: int) -> list[str]:
    """The same granian command line runconsole builds, serving a baseline application."""
    from django.conf import settings

    from tokens.management.commands.runconsole import web_command

    workers = args.workers or settings.WEB_WORKERS
    threads = args.threads or settings.WEB_THREADS
    return web_command("granian", f"127.0.0.1:{port}", workers=workers, threads=threads, app=app)


def serve(args, env, command: list[str], url_check: str, port: int):
    """Start a server group and wait (bounded) until it answers."""
    from tokens.processes import start_group

    server = start_group(command, cwd=ROOT, env=env, stdout=sys.stderr)
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url_check, timeout=1)
            return server
        except requests.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server on port {port} did not start") from None
            time.sleep(0.2)


def load(args, lua: Path, port: int) -> dict:
    """Warm every worker, then run wrk once and read its figures."""
    url = f"http://127.0.0.1:{port}"
    subprocess.run(
        ["wrk", "-t2", f"-c{args.connections}", "-d2s", "-s", str(lua), url],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
         "-s", str(lua), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return parse_wrk(out)


def org_id(n: int) -> str:
    """The provider org id seed() gives org n."""
    return f"00000000-0000-0000-0000-{n:012d}"


def probe(port: int, path: str, headers: dict[str, str]) -> None:
    """One request as wrk sends it: it must be a 200, or the figures measure an error."""
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1", **headers}
    answer = requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)
    if answer.status_code != 200:
        raise SystemExit(f"{path} answered {answer.status_code}: {answer.text[:200]}")


def run_round(args, env, key: str, scripts: dict[str, Path], port: int) -> dict[str, dict]:
    """One round: each baseline under its own server, then both console endpoints under
    one shipped console."""
    from tokens.processes import stop_groups

    check = f"http://127.0.0.1:{port}/healthz"
    figures = {}
    for name, (app, settings_module) in BASELINES.items():
        server_env = {**env, "DJANGO_SETTINGS_MODULE": settings_module}
        server = serve(args, server_env, baseline_command(args, app, port), check, port)
        try:
            figures[name] = load(args, scripts["console"], port)
        finally:
            stop_groups([server], timeout=5)
    server = serve(args, env, console_command(args, port), check, port)
    try:
        probe(port, "/api/v1/orgs/org-0/token", {"Authorization": f"Bearer {key}"})
        legacy = {"X-From": LEGACY_SENDER, "X-API-Phrase": LEGACY_PASSPHRASE}
        probe(port, "/api/token", {**legacy, "X-Organization-Id": org_id(0)})
        figures["console"] = load(args, scripts["console"], port)
        figures["legacy"] = load(args, scripts["legacy"], port)
    finally:
        stop_groups([server], timeout=15)  # runconsole stops its own groups first
    return figures


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
    parser.add_argument(
        "--workers", type=int, default=0, help="granian workers (default: as shipped)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="threads per worker (default: as shipped)"
    )
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
    scripts = {}
    for name, body in (("console", V1_SCRIPT), ("legacy", LEGACY_SCRIPT)):
        scripts[name] = workdir / f"{name}.lua"
        values = {"orgs": args.orgs, "key": key, "seed": 7}
        values |= {"sender": LEGACY_SENDER, "passphrase": LEGACY_PASSPHRASE}
        scripts[name].write_text((PROXY_HEADERS + body) % values)

    from django.conf import settings

    results: dict[str, list[dict]] = {name: [] for name in TARGETS}
    for round_number in range(1, args.rounds + 1):
        figures = run_round(args, env, key, scripts, args.port)
        for name in TARGETS:
            results[name].append(figures[name])
            f = figures[name]
            print(
                f"round {round_number} {name:8} {f['rate']:8.0f} req/s  "
                f"p50 {f['p50']:6.2f} ms  p99 {f['p99']:6.2f} ms  non-2xx {f['non_2xx']}",
                flush=True,
            )

    print(
        f"server=granian via runconsole workers={args.workers or settings.WEB_WORKERS} "
        f"threads={args.threads or settings.WEB_THREADS} connections={args.connections} "
        f"orgs={args.orgs} duration={args.duration}s rounds={args.rounds}"
    )
    for name, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99")}
        print(
            f"median {name:8} {m['rate']:8.0f} req/s  p50 {m['p50']:6.2f} ms  "
            f"p99 {m['p99']:6.2f} ms"
        )
    pairs = (("console", "django"), ("console", "wsgi"), ("legacy", "console"))
    for target, baseline in pairs:
        runs = list(zip(results[baseline], results[target], strict=True))
        rates = [t["rate"] / b["rate"] for b, t in runs]
        p99s = [t["p99"] / b["p99"] for b, t in runs]
        print(
            f"{target}/{baseline}: throughput median {statistics.median(rates):.2f} "
            f"(per round: {', '.join(f'{r:.2f}' for r in rates)}), "
            f"p99 median {statistics.median(p99s):.2f}"
        )
    failed = sum(r["non_2xx"] for name in ("console", "legacy") for r in results[name])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
