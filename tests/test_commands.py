"""The console's management commands explain themselves: every option has help, and a
command that did nothing says why and what would do more."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import BaseCommand, call_command, load_command_class

from tests.conftest import connect_org
from tokens.models import Org, Token

COMMANDS = sorted(
    path.stem
    for path in (Path(__file__).resolve().parent.parent / "tokens/management/commands").glob("*.py")
    if not path.stem.startswith("_")
)
# What Django adds to every command (--verbosity, --settings, ...): Django documents those.
DJANGO_OPTIONS = {action.dest for action in BaseCommand().create_parser("manage.py", "x")._actions}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_has_help(name):
    parser = load_command_class("tokens", name).create_parser("manage.py", name)
    own = [action for action in parser._actions if action.dest not in DJANGO_OPTIONS]
    undocumented = [action.option_strings or [action.dest] for action in own if not action.help]
    assert not undocumented, f"{name}: no help for {undocumented}"


def test_the_commands_are_all_found():
    assert {"refresh_tokens", "import_seed_env", "runconsole", "send_test_alert"} <= set(COMMANDS)


def refresh_tokens(*args: str) -> str:
    out = StringIO()
    call_command("refresh_tokens", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_refresh_tokens_says_nothing_was_due_and_that_force_exists(connected_org):
    version = Token.objects.get(org=connected_org).version
    out = refresh_tokens()
    assert "acme: not_due — Not due yet." in out
    assert "Nothing was due: 1 not due yet, left for their planned refresh." in out
    assert "--force refreshes them now anyway." in out
    assert Token.objects.get(org=connected_org).version == version  # nothing was refreshed


@pytest.mark.django_db
def test_refresh_tokens_says_how_many_it_refreshed(frozen_clock, connected_org, provider):
    other = connect_org(
        Org.objects.create(name="Other", slug="other", integration=connected_org.integration),
        provider,
    )
    Token.objects.filter(org=other).update(next_refresh_at=frozen_clock.current)
    out = refresh_tokens()
    assert "Refreshed 1; 1 not due yet" in out
    assert "2 of 2 orgs ok, 0 failed." in out
    forced = refresh_tokens("--force")
    assert "Refreshed 2." in forced
    assert "--force" not in forced


@pytest.mark.django_db
def test_refresh_tokens_with_no_connected_org_says_so():
    assert "No connected org: nothing to refresh." in refresh_tokens()
    assert "No connected org was due." in refresh_tokens("--due")
