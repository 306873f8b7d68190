"""Production settings: `check --deploy` is clean with a production environment, the
console refuses to start without its secrets or with unsafe ones (DEBUG, a short key, an
uncounted proxy, plain http to a provider), and static files are served by WhiteNoise."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.test import Client

from tokenconsole.deployment import proxy_ssl_header
from tokens.models import Integration

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A production environment; every variable a local .env could supply is set here."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "DATABASE_", "REDIS_", "SECURE_", "REQUIRE_", "TRUSTED_", "TOKEN_CONSOLE_")
        )
    }
    env.update(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="tokenconsole.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="console.example.com",
        CSRF_TRUSTED_ORIGINS="https://console.example.com",
        CONSOLE_BASE_URL="https://console.example.com",
        ADMINS="ops@example.com",  # alerts reach someone (tokens.W010)
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        TRUSTED_PROXY_COUNT="1",  # the one TLS proxy (docs/operations.md)
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_in_production(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_warns_when_production_is_not_signalled(tmp_path):
    result = check_deploy(production_env(tmp_path, DJANGO_ENV="development"))
    assert result.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in result.stderr  # HSTS, SSL redirect, both cookies


@pytest.mark.parametrize("variable", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_a_required_variable(tmp_path, variable):
    env = production_env(tmp_path, **{variable: ""})  # empty, so a .env cannot fill it in
    result = check_deploy(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"DJANGO_ENV=production needs {variable} set" in output
    for secret in (env["SECRET_KEY"], env["FIELD_ENCRYPTION_KEYS"]):
        assert not secret or secret not in output


def test_production_refuses_wildcard_hosts(tmp_path):
    result = check_deploy(production_env(tmp_path, ALLOWED_HOSTS="*"))
    assert result.returncode != 0
    assert "refuses ALLOWED_HOSTS=*" in result.stderr


def test_production_refuses_debug(tmp_path):
    env = production_env(tmp_path, DEBUG="true")  # what the .env of `make run` says
    result = check_deploy(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "DJANGO_ENV=production refuses DEBUG=true" in output
    assert env["SECRET_KEY"] not in output


def test_production_refuses_a_secret_key_shorter_than_50_characters(tmp_path):
    short = secrets.token_urlsafe(50)[:49]
    result = check_deploy(production_env(tmp_path, SECRET_KEY=short))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "refuses a SECRET_KEY shorter than 50 characters" in output
    assert short not in output
    assert check_deploy(production_env(tmp_path, SECRET_KEY=short + "x")).returncode == 0


def test_production_refuses_a_proxy_whose_hops_are_not_counted(tmp_path):
    result = check_deploy(production_env(tmp_path, TRUSTED_PROXY_COUNT="0"))
    assert result.returncode != 0
    assert "needs TRUSTED_PROXY_COUNT set" in result.stderr
    assert "usually TRUSTED_PROXY_COUNT=1" in result.stderr


def test_the_proxy_count_is_read_under_one_name_only(tmp_path):
    env = production_env(tmp_path, TOKEN_CONSOLE_TRUSTED_PROXY_COUNT="2")
    result = check_deploy(env)
    assert result.returncode != 0
    assert "Set TRUSTED_PROXY_COUNT, not TOKEN_CONSOLE_TRUSTED_PROXY_COUNT" in result.stderr
    env.pop("TOKEN_CONSOLE_TRUSTED_PROXY_COUNT")
    assert check_deploy(env).returncode == 0


def test_check_deploy_flags_a_plain_http_console_base_url(tmp_path):
    result = check_deploy(production_env(tmp_path, CONSOLE_BASE_URL="http://console.example.com"))
    assert result.returncode != 0
    assert "tokens.W003" in result.stderr
    assert "CONSOLE_BASE_URL is plain http (http://console.example.com)" in result.stderr


@pytest.mark.django_db
def test_check_deploy_refuses_a_stored_plain_http_provider_url_in_production(settings, integration):
    # Stored before the rule (or by a direct update): the fake provider's other URLs are
    # loopback http, which is allowed.
    Integration.objects.filter(pk=integration.pk).update(
        token_url="http://provider.example.com/v1/access_token"
    )
    settings.PRODUCTION = True
    found = [m for m in checks.run_checks(include_deployment_checks=True) if m.id == "tokens.E006"]
    assert [(m.level, "token_url" in m.msg) for m in found] == [(checks.ERROR, True)]
    settings.PRODUCTION = False
    assert not [
        m for m in checks.run_checks(include_deployment_checks=True) if m.id == "tokens.E006"
    ]


@pytest.mark.parametrize(
    "name", ["HTTP_X_FORWARDED_PROTO", "X-Forwarded-Proto", " x_forwarded_proto "]
)
def test_proxy_ssl_header_is_read_from_a_header_name(name):
    assert proxy_ssl_header(name) == ("HTTP_X_FORWARDED_PROTO", "https")
    assert proxy_ssl_header("") is None


@pytest.mark.django_db
def test_admin_static_files_are_served_without_debug(settings):
    assert settings.DEBUG is False
    response = Client().get("/static/admin/css/base.css")  # a new client: new middleware
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"/*")
    assert response["Content-Type"].startswith("text/css")


@pytest.mark.django_db
def test_the_token_api_is_not_a_static_file(client):
    response = client.get("/api/v1/orgs/acme/token")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
