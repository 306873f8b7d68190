"""Django's error reports (the admins' error mail) without the request's secrets.

Django blanks only POST fields that a view marks with sensitive_post_parameters, and
shows GET parameters and the full URL as they came. Here every request field or header
whose name suggests a secret is blanked, whichever view raised: a client secret or
passphrase in an admin form, an authorization code or state in the OAuth callback's
query, an API key or the sample's X-API-Phrase in a header.
"""

import re
from urllib.parse import urlsplit, urlunsplit

from django.http import HttpRequest, QueryDict
from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SENSITIVE_NAME = re.compile(r"secret|pass|phrase|token|code|key|otp|state|auth|csrf", re.I)


def cleansed(params: QueryDict, substitute: str) -> QueryDict:
    """A copy of `params` with the values of sensitive-sounding names replaced."""
    params = params.copy()
    for name in params:
        if SENSITIVE_NAME.search(name):
            params.setlist(name, [substitute])
    return params


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Blanks sensitive POST fields, headers, cookies and settings, always."""

    hidden_settings = _lazy_re_compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|PHRASE|SIGNATURE|HTTP_COOKIE", flags=re.I
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True  # also with DEBUG on: a debug page can be shared too

    def get_post_parameters(self, request: HttpRequest | None) -> QueryDict | dict:
        if request is None:
            return {}
        return cleansed(request.POST, self.cleansed_substitute)

    def get_safe_request_meta(self, request: HttpRequest) -> dict:
        meta = super().get_safe_request_meta(request)
        for name in ("QUERY_STRING", "RAW_URI", "REQUEST_URI"):
            if isinstance(meta.get(name), str) and meta[name]:
                path, _, query = meta[name].rpartition("?")
                safe = cleansed(QueryDict(query), self.cleansed_substitute).urlencode(safe="*")
                meta[name] = f"{path}?{safe}" if path else safe
        return meta


class SecretSafeExceptionReporter(ExceptionReporter):
    """Also blanks sensitive GET parameters, and the query string of the URL shown."""

    def get_traceback_data(self) -> dict:
        data = super().get_traceback_data()
        if self.request is not None:
            substitute = self.filter.cleansed_substitute
            data["request_GET_items"] = cleansed(self.request.GET, substitute).items()
            url = urlsplit(data.get("request_insecure_uri", ""))
            data["request_insecure_uri"] = urlunsplit(url._replace(query="", fragment=""))
        return data
