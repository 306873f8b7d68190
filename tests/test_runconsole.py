"""`make demo` as a newcomer meets it: one process runs web, cluster and fake provider;
signing in and pressing Connect connects the demo org; Ctrl-C stops everything. Other
ports work, a port in use is named, and the logs carry no noise."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

from tokens.management.commands.runconsole import Command

ROOT = Path(__file__).resolve().parent.parent
STOP_DEADLINE = 15  # seconds; runconsole waits 5 s, then kills what hangs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, deadline: float = 30) -> None:
    """Poll until something listens on the port (bounded), failing early if the process died."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, "runconsole exited before it served"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)  # readiness poll of a child process, not a test of time
    raise AssertionError(f"nothing listened on {port} within {deadline} s")


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def _proc_stats() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process, read from /proc."""
    stats = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats.append((int(stat.parent.name), fields[0], int(fields[1]), int(fields[2])))
    return stats


def wait_for_cluster_leader(console_pid: int, deadline: float = 30) -> None:
    """Poll until runconsole's qcluster supervisor has started its cluster (bounded)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for pid in child_pids(console_pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"qcluster" in cmdline and child_pids(pid):
                return
        time.sleep(0.1)  # readiness poll of a child process, not a test of time
    raise AssertionError(f"the task cluster did not start within {deadline} s")


def child_pids(parent: int) -> list[int]:
    """Pids of the running children of `parent`."""
    return [pid for pid, state, ppid, _ in _proc_stats() if ppid == parent and state != "Z"]


def live_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that are still running (zombies do not count)."""
    return [pid for pid, state, _, group in _proc_stats() if group == pgid and state not in "ZX"]


@pytest.fixture
def console_env(tmp_path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tokenconsole.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'console.sqlite3'}",
        SECRET_KEY="runconsole-test-" + Fernet.generate_key().decode(),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DEBUG="true",
        ADMINS="ops@example.com",  # no tokens.W010 warning in the output
    )
    return env


def sign_in(session: requests.Session, base: str, password: str) -> None:
    page = session.get(f"{base}/admin/login/", timeout=5)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    answer = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/admin/login/"},
        timeout=5,
    )
    assert answer.url == f"{base}/admin/", "login failed"


def press_connect(session: requests.Session, base: str) -> tuple[str, requests.Response]:
    """Press Connect on the Demo org's page: the page, and the answer before its redirect."""
    org_list = session.get(f"{base}/admin/tokens/org/", timeout=5).text
    org_page = re.search(r'href="(/admin/tokens/org/\d+/change/)"', org_list)[1]
    page = session.get(base + org_page, timeout=5).text
    connect = re.search(r'action="(/oauth/connect/[^"]+)"', page)
    assert connect and ">Connect</button>" in page, "no Connect button on the org's page"
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    pressed = session.post(
        base + connect[1], data={"csrfmiddlewaretoken": csrf}, timeout=10,
        headers={"Referer": base + org_page}, allow_redirects=False,
    )  # fmt: skip
    assert pressed.status_code == 302, pressed.text
    return org_page, pressed


def test_demo_console_connects_by_clicking_and_stops_on_ctrl_c(console_env):
    web_port, provider_port = free_port(), free_port()
    base = f"http://127.0.0.1:{web_port}"
    console_env["CONSOLE_BASE_URL"] = base
    manage(console_env, "migrate", "--no-input")
    manage(console_env, "createcachetable")
    created = manage(console_env, "ensure_admin")
    password = re.search(r"Password +(\S+)", created)[1]
    assert "exists already" in manage(console_env, "ensure_admin")
    manage(console_env, "setup_demo", "--provider-url", f"http://127.0.0.1:{provider_port}")

    console = subprocess.Popen(
        [sys.executable, "manage.py", "runconsole", "--addr", f"127.0.0.1:{web_port}",
         "--demo-provider", str(provider_port)],
        cwd=ROOT, env=console_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    children: list[int] = []
    try:
        wait_for_port(web_port, console)
        wait_for_port(provider_port, console)
        session = requests.Session()
        sign_in(session, base, password)
        org_page, pressed = press_connect(session, base)
        # The provider, then the callback, then back to the org's page.
        landed = session.get(pressed.headers["Location"], timeout=10)
        assert landed.url == base + org_page
        assert "Demo org is connected" in landed.text
        assert "org-status-connected" in landed.text
        children = child_pids(console.pid)
        assert len(children) == 4  # web, cluster, webhook cluster, fake provider
        clusters = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] for pid in children]
        assert sorted(c[c.index(b"qcluster") :] for c in clusters if b"qcluster" in c) == [
            [b"qcluster", b"--name", b"webhooks", b"--skip-checks"],
            [b"qcluster", b"--skip-checks"],
        ]
    finally:
        console.send_signal(signal.SIGINT)
        output, _ = console.communicate(timeout=STOP_DEADLINE)
    assert console.returncode == 0, output
    assert "Stopped." in output
    survivors = [pid for group in children for pid in live_members(group)]
    assert not survivors, "a process outlived Ctrl-C"


def run_console(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`manage.py runconsole ARGS` until it exits by itself."""
    command = [sys.executable, "manage.py", "runconsole", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_named_in_one_line_and_nothing_starts(console_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = run_console(console_env, "--addr", f"127.0.0.1:{port}")
        demo = run_console(
            console_env, "--addr", f"127.0.0.1:{free_port()}", "--demo-provider", str(port)
        )
    assert web.returncode == 1
    assert web.stdout == ""
    assert web.stderr.splitlines() == [
        f"CommandError: Port {port} is already in use: stop what uses it or choose another "
        f"with make run PORT={port + 1}."
    ]
    assert demo.returncode == 1
    assert demo.stderr.splitlines() == [
        f"CommandError: Port {port} is already in use: stop what uses it or choose another "
        f"with make demo DEMO_PROVIDER_PORT={port + 1}."
    ]


def test_ctrl_c_says_nothing_is_lost_when_it_had_to_kill_the_cluster(console_env):
    console_env["TOKEN_CONSOLE_PROCESS_STOP_TIMEOUT"] = "0"  # every child is killed
    manage(console_env, "migrate", "--no-input")
    port = free_port()
    console = subprocess.Popen(
        [sys.executable, "manage.py", "runconsole", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT, env=console_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, console)
        wait_for_cluster_leader(console.pid)  # its supervisor now handles SIGTERM
    finally:
        console.send_signal(signal.SIGINT)
        output, _ = console.communicate(timeout=STOP_DEADLINE)
    assert console.returncode == 0, output
    assert (
        "The task cluster did not stop within 0 s and was stopped forcibly; nothing is lost — "
        "the database holds every token and an interrupted refresh is retried."
    ) in output
    assert (
        "The webhook cluster did not stop within 0 s and was stopped forcibly; nothing is lost "
        "— an interrupted webhook delivery or alert is sent again."
    ) in output
    assert "Killed" not in output
    assert "Stopped." in output


def read_lines(process: subprocess.Popen) -> list[str]:
    """The process's output lines so far, growing as a thread reads them."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: list[str], pattern: str, process: subprocess.Popen) -> re.Match:
    """The first match of `pattern` in the output, once it has been read (bounded)."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        found = re.search(pattern, "".join(lines), re.M)
        if found:
            return found
        assert process.poll() is None, "".join(lines)
        time.sleep(0.1)  # polls a reader thread, not a test of time
    raise AssertionError(f"no {pattern!r} in the output:\n{''.join(lines)}")


def test_make_demo_on_other_ports_connects_there_and_logs_no_noise(tmp_path):
    from tests.test_setup import make_command, project_copy

    root = project_copy(tmp_path)
    web_port, provider_port = free_port(), free_port()
    base = f"http://127.0.0.1:{web_port}"
    demo = subprocess.Popen(
        make_command("demo", f"PORT={web_port}", f"DEMO_PROVIDER_PORT={provider_port}"),
        cwd=root, env={"PATH": os.environ["PATH"], "HOME": str(root)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines = read_lines(demo)
    try:
        wait_for_port(web_port, demo, deadline=120)  # after the whole set-up
        wait_for_port(provider_port, demo)
        password = wait_for_line(lines, r"^Password +(\S+) ", demo)[1]
        session = requests.Session()
        sign_in(session, base, password)
        assert session.get(f"{base}/favicon.ico", timeout=5).status_code == 200
        assert session.get(f"{base}/static/admin/css/base.css", timeout=5).status_code == 200
        assert session.get(f"{base}/static/missing.css", timeout=5).status_code == 404
        org_page, pressed = press_connect(session, base)
        authorize = parse_qs(urlsplit(pressed.headers["Location"]).query)
        assert authorize["redirect_uri"] == [f"{base}/oauth/callback/"]
        landed = session.get(pressed.headers["Location"], timeout=10)
        assert landed.url == base + org_page
        assert "Demo org is connected" in landed.text
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C reaches make and runconsole
        demo.wait(timeout=STOP_DEADLINE)
    wait_for_line(lines, r"^Stopped\.$", demo)
    output = "".join(lines)
    # make was interrupted too: it waits for runconsole, then ends by the same signal, as
    # a shell expects of an interrupted command, without an error line ("make: ***").
    assert demo.returncode == -signal.SIGINT, output
    assert '"GET /admin/login/ HTTP/1.1" 200' in output  # the access log is on ...
    assert '"GET /static/missing.css HTTP/1.1" 404' in output  # ... errors included ...
    assert "GET /static/admin" not in output  # ... but not for static files served fine
    assert "favicon" not in output
    assert "AXES: BEGIN" not in output
    assert "make: ***" not in output
    print(output)  # pytest -rP shows what a newcomer sees


def test_console_base_url_follows_the_address_unless_set(monkeypatch):
    monkeypatch.delenv("CONSOLE_BASE_URL", raising=False)
    env = Command(stdout=StringIO()).child_environment("0.0.0.0", 8001)  # noqa: S104
    assert env["CONSOLE_BASE_URL"] == "http://127.0.0.1:8001"
    assert Command().child_environment("::1", 8002)["CONSOLE_BASE_URL"] == "http://[::1]:8002"

    monkeypatch.setenv("CONSOLE_BASE_URL", "http://127.0.0.1:8000")  # an older .env's line
    out = StringIO()
    env = Command(stdout=out).child_environment("127.0.0.1", 8001)
    assert env["CONSOLE_BASE_URL"] == "http://127.0.0.1:8000"  # the admin's choice is kept
    assert "listens on port 8001" in out.getvalue()  # but a mismatch on loopback is named
    monkeypatch.setenv("CONSOLE_BASE_URL", "https://tokens.example.com")  # behind a proxy
    out = StringIO()
    Command(stdout=out).child_environment("127.0.0.1", 8001)
    assert out.getvalue() == ""
