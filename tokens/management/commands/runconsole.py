"""Run the web server and the django-q2 clusters together; Ctrl-C stops them all."""

import errno
import os
import socket
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tokens.conf import app_settings, webhook_cluster_name
from tokens.management.commands.qcluster import StopRequest
from tokens.processes import start_group, stop_groups

SERVERS = ("runserver", "granian")
# runconsole ran the system checks as it started (an error stops it there): its children
# skip them, so each warning is printed once, not once per process.
SKIP_CHECKS = ("--skip-checks",)
POLL_SECONDS = 0.5  # how often the loop looks at the stop flag and at the children
# Listening on every interface: the browser still reaches the console on loopback.
WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104  (compared with, not bound)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Said when a child had to be killed, so the line does not read like a failure.
NOTHING_LOST = {
    "task cluster": "; nothing is lost — the database holds every token and an interrupted "
    "refresh is retried",
    "webhook cluster": "; nothing is lost — an interrupted webhook delivery or alert is sent again",
}


class Command(BaseCommand):
    help = (
        "Run the console (web server + task cluster + webhook cluster); Ctrl-C or SIGTERM "
        "stops them all. --server granian is the production server (make serve)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--addr",
            default="127.0.0.1:8000",
            help="HOST:PORT (or PORT) to listen on. Unless CONSOLE_BASE_URL is set (in the "
            "environment or .env), the OAuth redirect URI follows this address.",
        )
        parser.add_argument(
            "--server",
            choices=SERVERS,
            default="runserver",
            help="runserver (local use, the default) or granian (production WSGI server).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.WEB_WORKERS,
            help="granian worker processes (default: WEB_WORKERS, 2).",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.WEB_THREADS,
            help="granian threads per worker running the application (default: WEB_THREADS, 2).",
        )
        parser.add_argument(
            "--demo-provider",
            metavar="PORT",
            type=int,
            help="Also serve the fake OAuth provider on 127.0.0.1:PORT (make demo).",
        )

    def handle(
        self, *args: object, addr: str, server: str, workers: int, threads: int, **opts: object
    ) -> None:
        python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
        demo_port = opts["demo_provider"]
        commands = {
            "web server": web_command(server, addr, workers=workers, threads=threads),
            "task cluster": [python, manage, "qcluster", *SKIP_CHECKS],
        }
        if hooks := webhook_cluster_name():
            # Deliveries and alerts have their own queue and workers: a slow or dead
            # receiver never holds a refresh worker (docs/webhooks.md).
            hooks_cluster = [python, manage, "qcluster", "--name", hooks, *SKIP_CHECKS]
            commands["webhook cluster"] = hooks_cluster
        host, port = listen_address(addr)
        port_check(host, port, hint=port_hint(server, demo=bool(demo_port)))
        if demo_port:
            port_check("127.0.0.1", demo_port, hint="make demo DEMO_PROVIDER_PORT")
            commands["demo provider"] = [
                python, "-m", "tokens.demo.provider", "--port", str(demo_port),
                "--client-id", "demo-client", "--client-secret", "demo-client-secret",
            ]  # fmt: skip
        env = self.child_environment(host, port)
        self.stdout.write(
            self.style.SUCCESS(f"Token Console: {http_url(host, port)}/admin/  (Ctrl-C stops it)")
        )
        self.stdout.flush()  # before the children write to the same output (a pipe, a log)
        exited = self.supervise(commands, env=env)
        if exited:
            sys.exit(1)

    def child_environment(self, host: str, port: int) -> dict[str, str]:
        """The children's environment: CONSOLE_BASE_URL follows the address unless it is set.

        settings.py loads .env into os.environ (without overwriting), so a value set there
        or in the environment counts as the admin's choice and is kept.
        """
        configured = os.environ.get("CONSOLE_BASE_URL")
        if configured is None:
            return {**os.environ, "CONSOLE_BASE_URL": http_url(host, port)}
        parts = urlsplit(configured)
        if parts.hostname in LOOPBACK_HOSTS and parts.port not in (None, port):
            self.stdout.write(
                self.style.WARNING(
                    f"CONSOLE_BASE_URL is {configured} but the console listens on port {port}: "
                    "Connect will send the browser to the other port. Remove CONSOLE_BASE_URL "
                    "from .env to let it follow the address."
                )
            )
        return dict(os.environ)

    def supervise(self, commands: dict[str, list[str]], *, env: dict[str, str]) -> str:
        """Run the commands until a signal or one of them exits; stop all; name the one."""
        stop = StopRequest()  # only sets a flag: a handler that takes a lock can deadlock
        stop.install()
        processes = {
            name: start_group(cmd, cwd=settings.BASE_DIR, env=env) for name, cmd in commands.items()
        }
        exited = ""
        while not (stop.requested or exited):
            time.sleep(POLL_SECONDS)
            exited = next((n for n, p in processes.items() if p.poll() is not None), "")
        if exited:
            self.stderr.write(f"The {exited} process exited; stopping the rest.")
        self.stdout.write("Stopping the web server and the clusters ...")
        timeout = app_settings.PROCESS_STOP_TIMEOUT
        killed = stop_groups(list(processes.values()), timeout=timeout)
        for name, process in processes.items():
            if process.pid in killed:
                self.stdout.write(
                    f"The {name} did not stop within {timeout:g} s and was stopped "
                    f"forcibly{NOTHING_LOST.get(name, '')}."
                )
        self.stdout.write("Stopped.")
        return exited


def listen_address(addr: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or a bare PORT (on 127.0.0.1) as (host, port)."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") if host else "127.0.0.1"
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise CommandError(f"--addr must be HOST:PORT (for example 0.0.0.0:8000), not {addr!r}.")
    return host, int(port)


def http_url(host: str, port: int) -> str:
    """The browser's URL of an address; a wildcard host is reached on loopback."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def port_hint(server: str, *, demo: bool) -> str:
    """The make command and variable that choose the web server's port."""
    if server == "granian":
        return "make serve WEB_PORT"
    return "make demo PORT" if demo else "make run PORT"


def port_check(host: str, port: int, *, hint: str) -> None:
    """CommandError, in one line, when something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port left in TIME_WAIT by a console just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {port} is already in use: stop what uses it or choose another "
                    f"with {hint}={port + 1}."
                ) from None
            raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None


def web_command(
    server: str,
    addr: str,
    *,
    workers: int,
    threads: int,
    app: str = "tokenconsole.wsgi:application",
) -> list[str]:
    """The web server's command line: Django's runserver, or granian serving `app`.

    bench/token_api.py serves its baselines through this too, so what it measures is
    the server configuration that `make serve` ships.
    """
    python = sys.executable
    host, port = listen_address(addr)
    if server == "runserver":
        manage = str(settings.BASE_DIR / "manage.py")
        return [python, manage, "runserver", addr, "--noreload", *SKIP_CHECKS]
    if workers < 1:
        raise CommandError(f"--workers (WEB_WORKERS) must be at least 1, not {workers}.")
    if threads < 1:
        raise CommandError(f"--threads (WEB_THREADS) must be at least 1, not {threads}.")
    return [
        python, "-m", "granian", "--interface", "wsgi", "--host", host,
        "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
        "--no-ws", app,
    ]  # fmt: skip
