"""Run the web server and the django-q2 cluster together; Ctrl-C stops both."""

import signal
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tokens.conf import app_settings
from tokens.processes import start_group, stop_groups

SERVERS = ("runserver", "granian")


class Command(BaseCommand):
    help = (
        "Run the console (web server + task cluster); Ctrl-C or SIGTERM stops both. "
        "--server granian is the production server (make serve)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="HOST:PORT to listen on.")
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
            help="granian threads per worker running the application (default: WEB_THREADS, 1).",
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
        python = sys.executable
        commands = {
            "web": web_command(server, addr, workers=workers, threads=threads),
            "cluster": [python, str(settings.BASE_DIR / "manage.py"), "qcluster"],
        }
        if opts["demo_provider"]:
            commands["demo provider"] = [
                python, "-m", "tokens.demo.provider", "--port", str(opts["demo_provider"]),
                "--client-id", "demo-client", "--client-secret", "demo-client-secret",
            ]  # fmt: skip
        self.stdout.write(
            self.style.SUCCESS(f"Token Console: http://{addr}/admin/  (Ctrl-C stops it)")
        )
        exited = self.supervise(commands)
        if exited:
            sys.exit(1)

    def supervise(self, commands: dict[str, list[str]]) -> str:
        """Run the commands until a signal or one of them exits; stop all; name the one."""
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        processes = {
            name: start_group(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()
        }
        exited = ""
        while not stop.wait(0.5):
            exited = next((n for n, p in processes.items() if p.poll() is not None), "")
            if exited:
                self.stderr.write(f"The {exited} process exited; stopping the rest.")
                break
        self.stdout.write("Stopping the web server and the cluster ...")
        killed = stop_groups(list(processes.values()), timeout=app_settings.PROCESS_STOP_TIMEOUT)
        if killed:
            self.stdout.write(f"Killed {len(killed)} process group(s) that did not stop in time.")
        self.stdout.write("Stopped.")
        return exited


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
    if server == "runserver":
        return [python, str(settings.BASE_DIR / "manage.py"), "runserver", addr, "--noreload"]
    host, _, port = addr.rpartition(":")
    if not (host and port.isdigit()):
        raise CommandError(f"--addr must be HOST:PORT (for example 0.0.0.0:8000), not {addr!r}.")
    if workers < 1:
        raise CommandError(f"--workers (WEB_WORKERS) must be at least 1, not {workers}.")
    if threads < 1:
        raise CommandError(f"--threads (WEB_THREADS) must be at least 1, not {threads}.")
    return [
        python, "-m", "granian", "--interface", "wsgi", "--host", host.strip("[]"),
        "--port", port, "--workers", str(workers), "--blocking-threads", str(threads),
        "--no-ws", app,
    ]  # fmt: skip
