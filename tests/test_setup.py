"""`make run`'s set-up as a newcomer runs it: .env, var/ and the SQLite database with its
-wal and -shm files are the owner's only, and `manage.py check` warns when they are not."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tokens.checks import check_private_files

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("manage.py", "tokenconsole", "tokens", "templates", "scripts")
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
    root = tmp_path / "console"
    root.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    return root


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
