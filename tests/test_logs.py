"""Logging: secrets redacted on every handler, for every logger; the refresh event lines."""

import copy
import io
import json
import logging
import logging.config
import re
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import TestCase

from tokens import services
from tokens.logs import REDACTED, JsonFormatter, RedactSecretsFilter, kv_line, redact
from tokens.models import Org, Token

API_KEY = "tc_abcd1234_" + "K" * 20 + "-_" + "z" * 21
ACCESS = "ZjA4YjQ1NzctYTc2Ny00ZmM0_P0A1_3a1c5e4b-9f2d-4b8e-a6c1-2f0e9d7b5a31"
REFRESH = "MzQ5ZTk2NjctOTQ3Ny00NGE1-refresh.token~value+/=="
CLIENT_SECRET = "c0ffee5ecretValue42"

# (message, the secret in it): every shape the filter must catch.
SHAPES = [
    (f"GET /v1/people/me Authorization: Bearer {ACCESS}", ACCESS),
    (f"header {{'Authorization': 'Basic {CLIENT_SECRET}'}}", CLIENT_SECRET),
    (f"bearer {REFRESH} rejected", REFRESH),
    (f"body grant_type=refresh_token&refresh_token={REFRESH}&client_id=x", REFRESH),
    (f"https://example.test/cb?access_token={ACCESS}&state=s", ACCESS),
    (f"form client_secret={CLIENT_SECRET}&client_id=abc", CLIENT_SECRET),
    (f'answer {{"access_token": "{ACCESS}", "expires_in": 1209599}}', ACCESS),
    (f'answer {{"refresh_token":"{REFRESH}"}}', REFRESH),
    (f"answer {{'access_token': '{ACCESS}', 'token_type': 'Bearer'}}", ACCESS),
    (f"key {API_KEY} used", API_KEY[12:]),
    (f"GET /oauth/callback/?code={CLIENT_SECRET}&state=abc HTTP/1.1", CLIENT_SECRET),
    # Percent-encoded once and twice, as in a login redirect's next= (secret as encoded).
    (f"GET /admin/login/?next=/cb/%3Faccess_token%3D{ACCESS}%26state%3Ds", ACCESS),
    (f"GET /admin/login/?next=/cb/%3Fx%3D1%26refresh_token%3D{quote(REFRESH)}", quote(REFRESH)),
    (f"next=%2Fcb%2F%253Fclient_secret%253D{CLIENT_SECRET}%2526x%253D1", CLIENT_SECRET),
    (f"next=%2Fcb%2F%253Fcode%253d{ACCESS}%2526state%253Dabc", ACCESS),
]


@pytest.mark.parametrize(("message", "secret"), SHAPES)
def test_redact_replaces_each_secret_shape(message, secret):
    redacted = redact(message)
    assert secret not in redacted
    assert REDACTED in redacted


def test_redact_keeps_what_is_not_secret():
    line = "event=refresh org=acme outcome=refreshed status=200 error=- fingerprint=0a1b2c3d4e5f"
    assert redact(line) == line
    assert redact(f"key {API_KEY}") == f"key tc_abcd1234_{REDACTED}"  # the prefix names the client
    assert redact('{"token_type": "Bearer", "expires_in": 3600}') == (
        '{"token_type": "Bearer", "expires_in": 3600}'
    )


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("%3Fcode%3DSECRETCODE%26state%3Dxyz", "%3Fcode%3D[redacted]%26state%3Dxyz"),
        (
            "%253Fcode%253DSECRETCODE%2526state%253Dxyz",
            "%253Fcode%253D[redacted]%2526state%253Dxyz",
        ),
    ],
)
def test_an_encoded_code_in_a_login_redirect_is_redacted(query, kept):
    message = f'"GET /admin/login/?next=/oauth/callback/{query} HTTP/1.1" 200 4168'
    record = logging.LogRecord("django.server", logging.INFO, __file__, 1, message, None, None)
    assert RedactSecretsFilter().filter(record)
    assert "SECRETCODE" not in record.getMessage()
    assert f"/oauth/callback/{kept} HTTP/1.1" in record.getMessage()


@pytest.fixture
def production_output():
    """settings.LOGGING as configured in production, with its console writing to a buffer."""
    stream = io.StringIO()
    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.parametrize("name", ["urllib3.connectionpool", "requests", "django-q", "tokens.api"])
def test_every_secret_shape_is_redacted_through_any_logger(production_output, name):
    logger = logging.getLogger(name)
    for message, _ in SHAPES:
        logger.warning(message)
    logger.warning("tuple args %s and %r", f"Bearer {ACCESS}", {"refresh_token": REFRESH})
    logger.warning("dict args %(auth)s", {"auth": f"Authorization: Bearer {API_KEY}"})
    logger.warning("not strings %d %s %s", 42, None, 3.5)
    output = production_output.getvalue()
    assert output.count(f"WARNING {name} ") == len(SHAPES) + 3
    assert "not strings 42 None 3.5" in output
    for secret in {secret for _, secret in SHAPES} | {ACCESS, REFRESH, API_KEY[12:]}:
        assert secret not in output


def test_a_secret_in_an_exception_is_redacted_from_the_traceback(production_output):
    try:
        raise ValueError(f"token endpoint said refresh_token={REFRESH} is invalid")
    except ValueError:
        logging.getLogger("django_q.worker").exception("task failed for Bearer %s", ACCESS)
    output = production_output.getvalue()
    assert "Traceback (most recent call last)" in output
    assert f"ValueError: token endpoint said refresh_token={REDACTED} is invalid" in output
    assert ACCESS not in output
    assert REFRESH not in output


def test_the_error_mail_has_no_secret_from_the_message_or_frame_locals(
    production_output, mailoutbox
):
    refresh_token = REFRESH  # a local variable Django's error report would otherwise show
    try:
        raise RuntimeError(f"refused Bearer {ACCESS}")
    except RuntimeError:
        logging.getLogger("django.request").error(
            "failed with refresh_token=%s", refresh_token, exc_info=True
        )
    [mail] = mailoutbox
    assert "failed with" in mail.subject + mail.body
    for secret in (ACCESS, REFRESH):
        assert secret not in mail.subject + mail.body + str(mail.alternatives)
    assert ACCESS not in production_output.getvalue()


def test_a_broken_log_call_does_not_crash_and_stays_redacted(production_output):
    logging.getLogger("urllib3.connectionpool").warning("%d items", f"Bearer {ACCESS}")
    output = production_output.getvalue()
    assert "%d items" in output
    assert ACCESS not in output


def test_the_json_format_carries_the_fields_redacted(production_output):
    handler = next(h for h in logging.getLogger().handlers if h.stream is production_output)
    handler.setFormatter(JsonFormatter())
    extra = {"org": "acme", "outcome": "refreshed", "note": f"access_token={ACCESS}"}
    logging.getLogger("tokens.refresh").info("event=refresh org=acme", extra=extra)
    entry = json.loads(production_output.getvalue())
    assert entry["logger"] == "tokens.refresh"
    assert entry["level"] == "INFO"
    assert entry["message"] == "event=refresh org=acme"
    assert (entry["org"], entry["outcome"]) == ("acme", "refreshed")
    assert entry["note"] == f"access_token={REDACTED}"


def test_every_configured_handler_redacts():
    # Import the libraries that log, so any handler they add for themselves is seen.
    import django_q.cluster  # noqa: F401
    import requests  # noqa: F401
    import urllib3  # noqa: F401

    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handlers = {h for logger in loggers for h in logger.handlers}
    # pytest's capture handlers aside; a NullHandler (urllib3 adds one) writes nothing.
    ours = [
        h
        for h in handlers
        if not type(h).__module__.startswith("_pytest") and not isinstance(h, logging.NullHandler)
    ]
    assert {type(h).__name__ for h in ours} >= {"StreamHandler", "AdminEmailHandler"}
    for handler in ours:
        assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters), handler


def test_settings_attach_the_filter_to_every_handler():
    for name, handler in settings.LOGGING["handlers"].items():
        assert "redact_secrets" in handler["filters"], name


def test_kv_line_quotes_what_would_break_parsing():
    assert kv_line({"a": "x", "b": None, "c": "", "d": 'say "hi" now', "e": "k=v"}) == (
        'a=x b=- c=- d="say \\"hi\\" now" e="k=v"'
    )


def refresh(org: Org) -> services.RefreshResult:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.token_refresh(org_id=org.pk, trigger="manual", force=True)


def refresh_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tokens.refresh"]


LINE = re.compile(
    r"event=refresh org=acme trigger=manual outcome=(\S+) duration_ms=\d+ status=(\S+) "
    r"error=(\S+) fingerprint=(\S+) version=(\d+) failures=(\S+)"
)


@pytest.mark.django_db
def test_a_refresh_logs_one_line_with_its_fields(frozen_clock, connected_org, provider, caplog):
    caplog.set_level(logging.INFO)
    refresh(connected_org)
    [record] = refresh_lines(caplog)
    token = Token.objects.get(org=connected_org)
    assert record.levelno == logging.INFO
    assert LINE.fullmatch(record.getMessage()).groups() == (
        "refreshed", "200", "-", token.access_fingerprint, str(token.version), "0",
    )  # fmt: skip
    assert (record.org, record.outcome, record.status) == ("acme", "refreshed", 200)
    assert record.fingerprint == token.access_fingerprint
    assert isinstance(record.duration_ms, int)
    assert token.access_token not in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault", "outcome", "status", "error"),
    [
        ("500", "retry_scheduled", "500", r"\S+"),
        ("invalid_grant", "needs_reconnect", "400", "invalid_grant"),
    ],
)
def test_a_failed_refresh_logs_one_warning_line(
    frozen_clock, connected_org, provider, caplog, fault, outcome, status, error
):
    caplog.set_level(logging.INFO)
    provider.fail_next(fault)
    refresh(connected_org)
    [record] = refresh_lines(caplog)
    groups = LINE.fullmatch(record.getMessage()).groups()
    assert record.levelno == logging.WARNING
    assert groups[:2] == (outcome, status)
    assert re.fullmatch(error, groups[2])
    assert groups[3] == "-"  # no new token, so no fingerprint
