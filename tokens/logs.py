"""Logging helpers: key=value event lines, a filter that redacts secrets, a JSON formatter.

Stdlib only, and no Django or model imports: settings.LOGGING loads this module while
Django configures logging, before the apps are ready.
"""

import json
import logging
import re
from typing import Any

REDACTED = "[redacted]"

# Field names whose values are secrets wherever they appear (form bodies, query strings,
# JSON, Python reprs).
_SECRET_NAMES = r"access_token|refresh_token|id_token|client_secret|code_verifier"
# A query string also turns up percent-encoded, once or twice: a login redirect carries
# the URL it came from in next= (/admin/login/?next=/oauth/callback/%3Fcode%3D…%26state…),
# and a redirect of that URL encodes it again (%253D). These match `=`, a parameter's
# start and its end (`&`) in all three forms.
_EQUALS = r"(?:=|%3D|%253D)"
_PARAMETER_START = r"(?:[?&]|%3F|%26|%253F|%2526)"
_PARAMETER_END = r"(?:%26|%2526)"
# A field name starts at a word boundary, or right after an encoded character ("%3F").
_NAME_START = r"(?:\b|(?<=%[0-9A-Fa-f]{2})|(?<=%25[0-9A-Fa-f]{2}))"

# Each pattern keeps its harmless context (the field name, the scheme) and replaces the
# secret. Order matters only for readability: each one is applied to the previous result.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A whole Authorization header value: "Authorization: Basic …", "'Authorization': '…'".
    (re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+"), r"\1" + REDACTED),
    # RFC 6750 bearer credentials anywhere: "Bearer <token>".
    (re.compile(r"(?i)(\bbearer\s+)[\w.~+/-]+=*"), r"\1" + REDACTED),
    # "access_token": "…" and 'refresh_token': '…' pairs (JSON, dict reprs).
    (
        re.compile(rf"(?i)(['\"](?:{_SECRET_NAMES})['\"]\s*:\s*)(['\"])(?:\\.|(?!\2).)*\2"),
        r"\1\2" + REDACTED + r"\2",
    ),
    # access_token=… in form bodies, query strings and our own key=value lines, also encoded.
    (
        re.compile(
            rf"(?i){_NAME_START}((?:{_SECRET_NAMES}){_EQUALS})(?:(?!{_PARAMETER_END})[^&\s'\",;])+"
        ),
        r"\1" + REDACTED,
    ),
    # The OAuth authorization code in a callback URL's query string, also encoded.
    (
        re.compile(rf"(?i)({_PARAMETER_START}code{_EQUALS})(?:(?!{_PARAMETER_END})[^&\s'\"])+"),
        r"\1" + REDACTED,
    ),
    # Our API keys, tc_<prefix>_<secret>: the prefix names the client and is not secret.
    (re.compile(r"\b(tc_[a-z0-9]{8}_)[A-Za-z0-9_-]{43}"), r"\1" + REDACTED),
)


def redact(text: str) -> str:
    """The text with everything that looks like a token, key or client secret replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# What every LogRecord has; anything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactSecretsFilter(logging.Filter):
    """Redacts secrets in a record's message, arguments, traceback and stack; never drops it.

    Attach it to every handler (not to loggers): handler filters see the records of all
    loggers, third-party ones included, and run only for records that are emitted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place with its formatted, redacted message."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep both parts, redacted, for the reader
            message = f"{record.msg!s} (arguments: {record.args!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Drop the live exception, so no handler renders it again unredacted: Django's
            # AdminEmailHandler would add each frame's local variables, tokens included.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in vars(record).items():  # `extra` fields, for the JSON formatter
            if isinstance(value, str) and name not in _RECORD_ATTRIBUTES:
                setattr(record, name, redact(value))
        return True


class SkipPathsFilter(logging.Filter):
    """Drops the development server's access lines for paths under `prefixes` served fine.

    For the `django.server` logger: its records carry the request line as their first
    argument and the status as `status_code`. Errors (4xx, 5xx) are always kept.
    """

    def __init__(self, prefixes: list[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a successful request whose path starts with one of the prefixes."""
        if getattr(record, "status_code", 0) >= 400 or not isinstance(record.args, tuple):
            return True
        request_line = str(record.args[0]).split() if record.args else []
        return not (len(request_line) > 1 and request_line[1].startswith(self.prefixes))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, `extra` fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str)


def kv_line(fields: dict[str, Any]) -> str:
    """`key=value key=value`: None as `-`, values with spaces, quotes or `=` JSON-quoted."""
    parts = []
    for key, value in fields.items():
        text = "-" if value is None or value == "" else str(value)
        if re.search(r"[\s\"=]", text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log one `event=<event> key=value …` line, with the same fields as `extra`."""
    if logger.isEnabledFor(level):
        logger.log(level, kv_line({"event": event, **fields}), extra={"event": event, **fields})
