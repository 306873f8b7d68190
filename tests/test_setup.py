"""`make run`'s set-up as a newcomer runs it: .env, var/ and the SQLite database with its
-wal and -shm files are the owner's only, and `manage.py check` warns when they are not;
the set-up prints a line per step and ends with how to sign in."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tokens.checks import check_private_files

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("manage.py", "tokenconsole", "tokens", "templates", "scripts", "tests", "Makefile")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
# The virtualenv is shared and installed already (maybe from other requirements, on a
# branch): make finds this stamp, in the copy, up to date and installs nothing.
INSTALL_STAMP = ".installed-by-test"
# Run inside a console process with its database open: the -wal and -shm files exist only
# while a connection does.
PROBE = """
import json, os
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM django_session")
name = settings.DATABASES["default"]["NAME"]
print(json.dumps({s: os.stat(name + s).st_mode & 0o777 for s in ("", "-wal", "-shm")}))
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A fresh copy of the project: no .env, no var/, as `make run` first finds it."""
    return project_copy(tmp_path)


def project_copy(tmp_path: Path) -> Path:
    """A copy of the project under tmp_path that shares this checkout's virtualenv, which
    `make install` finds up to date."""
    root = tmp_path / "console"
    root.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    share_virtualenv(root)
    return root


def share_virtualenv(root: Path) -> None:
    """Link the copy to this checkout's virtualenv, with an install stamp of its own that
    is newer than the requirements, so make installs nothing (see `make`)."""
    (root / ".venv").symlink_to((ROOT / ".venv").resolve())
    for name in REQUIREMENTS:
        shutil.copy(ROOT / name, root / name)
    stamp = root / INSTALL_STAMP
    stamp.touch()
    older = stamp.stat().st_mtime - 60
    for name in REQUIREMENTS:
        os.utime(root / name, (older, older))


def make_command(*args: str) -> list[str]:
    """`make ARGS` in a copy: its own install stamp, not the shared virtualenv's."""
    return ["make", "--no-print-directory", f"STAMP={INSTALL_STAMP}", *args]


def make(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`make ARGS` in the copy as a newcomer's shell runs it: no settings of the test run."""
    return subprocess.run(
        make_command(*args),
        cwd=checkout,
        env={"PATH": os.environ["PATH"], "HOME": str(checkout), **env},
        umask=0o022,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """One step as make runs it, from a shell whose umask lets others read (022), with no
    settings inherited from the test run: the copy's own .env and var/ are used."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=checkout,
        env={"PATH": os.environ["PATH"], "HOME": str(checkout)},
        umask=0o022,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_make_run_setup_leaves_env_var_and_database_private(checkout):
    # The steps of `make run` (the Makefile's env and setup targets), in its order.
    run(checkout, "scripts/init_env.py")
    for step in (
        ["migrate", "--no-input"],
        ["createcachetable"],
        ["ensure_admin"],
        ["setup_schedules"],
    ):
        run(checkout, "manage.py", *step)
    database = checkout / "var" / "db.sqlite3"
    assert mode(checkout / ".env") == 0o600
    assert mode(checkout / "var") == 0o700
    modes = json.loads(run(checkout, "manage.py", "shell", "--no-imports", "-c", PROBE).stdout)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert "tokens.W004" not in run(checkout, "manage.py", "check").stderr

    database.chmod(0o644)  # as the console before this fix created it
    warned = run(checkout, "manage.py", "check").stderr
    assert "tokens.W004" in warned
    assert f"chmod 600 {database}" in warned


def test_private_file_check_warns_about_an_env_file_others_can_read(settings, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=not-a-real-one\n")
    settings.ENV_FILE = env_file
    env_file.chmod(0o644)
    warnings = check_private_files(None)
    assert [warning.id for warning in warnings] == ["tokens.W004"]
    assert str(env_file) in warnings[0].msg
    assert "chmod 600" in warnings[0].hint
    assert "not-a-real-one" not in warnings[0].msg + warnings[0].hint
    env_file.chmod(0o600)
    assert not any(str(env_file) in warning.msg for warning in check_private_files(None))


PASSWORD = re.compile(r"^Password +(\S+) ", re.M)
# The whole output of `make setup` on a first run: a line per step, then the banner.
SETUP_MAX_LINES = 12


def admin_password_works(checkout: Path, password: str) -> bool:
    probe = (
        "from django.contrib.auth.models import User; "
        f"print(User.objects.get(username='admin').check_password({password!r}))"
    )
    return run(checkout, "manage.py", "shell", "--no-imports", "-c", probe).stdout.strip() == "True"


def test_make_setup_prints_a_line_per_step_and_ends_with_the_banner(checkout):
    first = make(checkout, "setup", "PORT=8123")
    assert first.returncode == 0, first.stdout + first.stderr
    output = first.stdout + first.stderr
    print(output)  # pytest -rP shows what a newcomer sees
    assert len(output.splitlines()) <= SETUP_MAX_LINES
    assert "AXES: BEGIN" not in output
    assert "Applying" not in output  # migrate's ninety lines stay out of sight
    assert "Migrating the database ... done" in output
    passwords = PASSWORD.findall(output)
    assert len(passwords) == 1 and output.count(passwords[0]) == 1
    assert admin_password_works(checkout, passwords[0])
    banner = output[output.index("Token Console  ") :]
    assert banner.splitlines()[0] == "Token Console  http://127.0.0.1:8123/admin/"
    assert re.search(r"^User +admin$", banner, re.M)
    assert f"Settings       {checkout / '.env'}" in banner
    assert "Keep this file" in banner

    again = make(checkout, "setup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not PASSWORD.search(again.stdout)  # shown on the first run only
    assert passwords[0] not in again.stdout
    assert "User           admin  (exists already" in again.stdout
    assert "http://127.0.0.1:8000/admin/" in again.stdout


def test_make_setup_shows_a_failing_steps_output_and_v1_shows_all(checkout):
    broken = make(checkout, "setup", DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing")
    assert broken.returncode != 0
    assert "Migrating the database ... failed" in broken.stdout
    assert "OperationalError" in broken.stdout  # the step's own output, shown on failure
    assert "Token Console  " not in broken.stdout

    verbose = make(checkout, "setup", "V=1")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "Applying tokens.0001_initial... OK" in verbose.stdout


def test_init_env_leaves_console_base_url_to_follow_the_port(checkout):
    run(checkout, "scripts/init_env.py")
    settings_lines = (checkout / ".env").read_text().splitlines()
    assert not [line for line in settings_lines if line.startswith("CONSOLE_BASE_URL")]
