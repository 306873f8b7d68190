"""Start and stop child process groups with a bounded wait.

django-q2's cluster can hang on SIGTERM (DESIGN.md, known pitfalls), so whatever
starts one stops it with a deadline and then kills its whole process group. That is
safe because the database, not the queue, is the source of truth.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence


def start_group(command: Sequence[str], **popen_kwargs: object) -> subprocess.Popen:
    """Start `command` as the leader of a new process group (its workers join it)."""
    return subprocess.Popen(list(command), start_new_session=True, **popen_kwargs)  # noqa: S603


def stop_groups(
    processes: Sequence[subprocess.Popen], *, timeout: float, leaders_only: bool = False
) -> list[int]:
    """SIGTERM every group, wait up to `timeout` s in all, then SIGKILL what is left.

    With `leaders_only`, SIGTERM goes to each group's leader alone, which stops the rest of
    its group itself (`qcluster` lets its workers finish the task in hand). Returns the
    pids that had to be killed.
    """
    for process in processes:
        if leaders_only:
            process.send_signal(signal.SIGTERM)  # a no-op once it has exited
        else:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    killed = []
    for process in processes:
        # Asked before the SIGKILL, which may end the leader before a later poll() could
        # tell a leader that was still running from one that had stopped in time.
        running = process.poll() is None
        # Workers of a cluster may outlive their leader: kill the group either way.
        if _signal_group(process, signal.SIGKILL) and running:
            killed.append(process.pid)
        process.wait()
    return killed


def _signal_group(process: subprocess.Popen, signum: int) -> bool:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
