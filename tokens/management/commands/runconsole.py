"""Run the web server and the django-q2 cluster together; Ctrl-C stops both."""

import signal
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from tokens.conf import app_settings
from tokens.processes import start_group, stop_groups


class Command(BaseCommand):
    help = "Run the console (web server + task cluster) for local use; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument(
            "--demo-provider",
            metavar="PORT",
            type=int,
            help="Also serve the fake OAuth provider on 127.0.0.1:PORT (make demo).",
        )

    def handle(self, *args: object, addr: str, demo_provider: int | None, **opts: object) -> None:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "web": [python, manage, "runserver", addr, "--noreload"],
            "cluster": [python, manage, "qcluster"],
        }
        if demo_provider:
            commands["demo provider"] = [
                python, "-m", "tests.fake_provider", "--port", str(demo_provider),
                "--client-id", "demo-client", "--client-secret", "demo-client-secret",
            ]  # fmt: skip
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        processes = {
            name: start_group(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"Token Console: http://{addr}/admin/  (Ctrl-C stops it)")
        )
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
        if exited:
            sys.exit(1)
