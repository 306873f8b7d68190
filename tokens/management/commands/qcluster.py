"""Run the django-q2 task cluster; SIGTERM or Ctrl-C stops it within a bound.

This replaces django-q2's `qcluster` (tokens comes first in INSTALLED_APPS), whose SIGTERM
handler sets a multiprocessing Event from signal context and can hang for good (DESIGN.md,
known pitfalls; django-q2 #346). Two processes instead of one:

- the supervisor (what `manage.py qcluster` starts) runs the cluster in a process group
  of its own (tokens.processes) and, on SIGTERM or SIGINT, asks that group's leader to
  stop, waits up to CLUSTER_STOP_TIMEOUT and kills what is left, as runconsole does;
- the leader (`--supervised`) runs django-q2's Cluster with signal handlers that only
  set a flag, and stops it from ordinary code: the workers finish the tasks the cluster
  has already taken from the broker, then exit. Signals sent to the supervisor's process
  group do not reach the workers, so a refresh in flight completes instead of dying with
  its worker.

Killing is safe because the database, not the queue, is the source of truth: a refresh
cut short leaves only its claim, which runs out (tokens/services/refresh.py).
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tokens.conf import app_settings
from tokens.processes import start_group, stop_groups

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often the loops look at the stop flag and at their processes
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A signal handler that only records the request: one that takes a lock can deadlock."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True

    def install(self) -> None:
        """Make SIGTERM and SIGINT set this flag."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self)


class Command(BaseCommand):
    help = (
        "Run the django-q2 task cluster. SIGTERM or Ctrl-C stops it: the task in hand "
        "finishes, and what still runs after CLUSTER_STOP_TIMEOUT seconds is killed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "-n",
            "--name",
            dest="cluster_name",
            help="Cluster (queue) name instead of Q_CLUSTER's, as django-q2's --name.",
        )
        # The supervisor starts the cluster's own process with its pid; not for people.
        parser.add_argument("--supervised", type=int, metavar="PID", help=argparse.SUPPRESS)

    def handle(
        self, *args: object, cluster_name: str | None, supervised: int | None, **opts
    ) -> None:
        if not settings.SECRET_KEY:  # django-q2 signs every task with it
            raise CommandError("SECRET_KEY is empty: the cluster cannot sign its tasks.")
        if cluster_name:
            os.environ["Q_CLUSTER_NAME"] = cluster_name  # read by django-q2 at import
        exit_code = run_cluster(supervisor=supervised) if supervised else supervise_cluster()
        if exit_code:
            sys.exit(exit_code)


def supervise_cluster() -> int:
    """Run the cluster in its own process group until a signal or its exit, then stop it."""
    stop = StopRequest()
    stop.install()
    # The checks ran here (or in runconsole): the cluster skips them, so each prints once.
    command = [
        sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster",
        "--supervised", str(os.getpid()), "--skip-checks",
    ]  # fmt: skip
    cluster = start_group(command, cwd=settings.BASE_DIR)
    while not stop.requested and cluster.poll() is None:
        time.sleep(POLL_SECONDS)
    if stop.requested:
        logger.info("qcluster stopping: the tasks in hand finish first")
    else:
        logger.error("The cluster exited (status %s); stopping qcluster.", cluster.returncode)
    timeout = app_settings.CLUSTER_STOP_TIMEOUT
    if stop_groups([cluster], timeout=timeout, leaders_only=True):
        logger.warning("The cluster did not stop within %s s and was killed.", timeout)
    logger.info("qcluster stopped")
    return 0 if stop.requested else 1


def run_cluster(*, supervisor: int) -> int:
    """Run django-q2's cluster in this process until asked to stop; 1 if it died by itself.

    `supervisor` is the pid of the qcluster that started it, passed rather than read with
    getppid() here: a supervisor killed while this process starts must still be missed.
    """
    from django_q.cluster import Cluster  # sets up Django's apps on import

    stop = StopRequest()
    # Cluster() installs django-q2's handlers; block the signals until ours replace them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    cluster = Cluster()
    stop.install()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    cluster.start()
    while not stop.requested and cluster.sentinel.is_alive():
        _end_if_orphaned(supervisor)
        time.sleep(POLL_SECONDS)
    # From a thread: if the sentinel died waiting on the event (a SIGTERM sent to every
    # process kills it), set() waits for it for ever. The sentinel, once it sees the
    # event, stops taking tasks and stops each worker once it has done the ones it holds.
    threading.Thread(target=cluster.stop_event.set, daemon=True).start()
    while cluster.sentinel.is_alive():
        _end_if_orphaned(supervisor)
        cluster.sentinel.join(POLL_SECONDS)
    return 0 if stop.requested else 1


def _end_if_orphaned(supervisor: int) -> None:
    """If the supervisor is gone (killed), nothing bounds this cluster: kill its group now."""
    if os.getppid() != supervisor and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
