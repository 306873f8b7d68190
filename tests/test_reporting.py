"""The admins' error report (what Django mails on a 500) carries no secret of the request."""

from django.test import RequestFactory
from django.views.debug import get_exception_reporter_class

SECRETS = {
    "client_secret": "s3cr3t-in-a-form",
    "legacy_passphrase": "a-passphrase-in-a-form",
    "code": "an-authorization-code",
    "state": "an-oauth-state",
}


def error_report() -> tuple[str, str]:
    """The report Django's AdminEmailHandler mails for an error while handling a request
    full of secrets (our log filter has already dropped the traceback, see test_logs)."""
    request = RequestFactory().post(
        "/oauth/callback/?code=an-authorization-code&state=an-oauth-state&org=acme",
        data={"client_secret": SECRETS["client_secret"], "name": "Webex prod",
              "legacy_passphrase": SECRETS["legacy_passphrase"]},
        HTTP_AUTHORIZATION="Bearer tc_abcdefgh_" + "k" * 43,
        HTTP_X_API_PHRASE="a-sample-phrase",
    )  # fmt: skip
    reporter = get_exception_reporter_class(request)(request, None, "Internal Server Error", None)
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def test_error_report_blanks_secrets_in_forms_query_and_headers():
    for report in error_report():
        for secret in [*SECRETS.values(), "k" * 43, "a-sample-phrase"]:
            assert secret not in report
        assert "Webex prod" in report  # what is not secret stays, to debug with


def test_totp_keys_are_hidden_in_the_admin(settings):
    assert settings.OTP_ADMIN_HIDE_SENSITIVE_DATA is True
