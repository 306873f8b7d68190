"""Write docs/configuration.md from tokens/conf.py and tokenconsole/settings.py.

    .venv/bin/python scripts/config_docs.py          # rewrite docs/configuration.md
    .venv/bin/python scripts/config_docs.py --check  # exit 1 if it is out of date

The knobs come from tokens.conf.DEFAULTS, each with the comment above it in conf.py (a
knob without a comment of its own shares the one above it, as conf.py writes them). The
environment variables are the `env.<type>("NAME", default=...)` calls in settings.py,
described in ENVIRONMENT below. tests/test_docs.py fails when the file is out of date.
"""

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "tokens" / "conf.py"
SETTINGS = ROOT / "tokenconsole" / "settings.py"
OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = ".venv/bin/python scripts/config_docs.py"
UNDOCUMENTED = "(undocumented: describe it in ENVIRONMENT, scripts/config_docs.py)"

# What each environment variable read in settings.py means. One line each; the default
# column comes from settings.py itself.
ENVIRONMENT = {
    "DJANGO_ENV": "`production` switches on the https-only defaults (secure cookies, http "
    "to https redirect, HSTS, staff 2FA, hashed static files) and refuses to start without "
    "`SECRET_KEY`, `FIELD_ENCRYPTION_KEYS` and `ALLOWED_HOSTS` (docs/operations.md)",
    "DEBUG": "Django's debug mode; refused in production (its error pages show settings "
    "and local variables)",
    "SECRET_KEY": "Django's secret key (signs sessions); production needs 50+ characters",
    "ALLOWED_HOSTS": "comma-separated host names the console answers to; `*` is refused "
    "in production, where the default is none",
    "CSRF_TRUSTED_ORIGINS": "comma-separated origins (`https://console.example.com`) the "
    "admin's forms may post from, behind a proxy",
    "FIELD_ENCRYPTION_KEYS": "comma-separated Fernet keys: the first encrypts, all decrypt "
    "(key rotation: docs/operations.md); required (check `tokens.E001`)",
    "SECURE_PROXY_SSL_HEADER": "the header a TLS proxy sets to `https`, e.g. "
    "`HTTP_X_FORWARDED_PROTO`; only if the proxy always overwrites it, and production then "
    "needs `TRUSTED_PROXY_COUNT` too",
    "SECURE_SSL_REDIRECT": "redirect http to https (`/healthz` is exempt)",
    "SESSION_COOKIE_SECURE": "session cookie over https only",
    "CSRF_COOKIE_SECURE": "CSRF cookie over https only",
    "SECURE_HSTS_SECONDS": "HSTS max-age (0: off)",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "HSTS for subdomains too",
    "SECURE_HSTS_PRELOAD": "ask for HSTS preloading (the domain owner's call; off silences "
    "`security.W021`)",
    "CONSOLE_BASE_URL": "public URL of the console; the OAuth redirect URI is built from it "
    "(https in production: `tokens.W003`)",
    "WEB_WORKERS": "granian worker processes under `make serve` (one per core)",
    "WEB_THREADS": "threads per granian worker that run the WSGI application",
    "DATABASE_URL": "any django-environ database URL (`postgres://…`); the default SQLite "
    "file uses WAL, a busy timeout and `IMMEDIATE` transactions",
    "SQLITE_BUSY_TIMEOUT": "seconds a SQLite writer waits for the lock before failing",
    "CONN_MAX_AGE": "seconds a process keeps its database connection (`0` opens one per "
    "request or task)",
    "CONN_HEALTH_CHECKS": "check a kept connection before reuse, so one the server dropped "
    "is reopened instead of failing",
    "TIME_ZONE": "Django's time zone (times are stored in UTC)",
    "STATIC_ROOT": "where `collectstatic` writes the files WhiteNoise serves in production",
    "AXES_FAILURE_LIMIT": "failed admin sign-ins (per username and address) before the lock",
    "AXES_COOLOFF_MINUTES": "how long such a lock lasts",
    "REQUIRE_STAFF_2FA": "staff confirm sign-in with a TOTP code (`manage.py totp_enrol`)",
    "OTP_TOTP_ISSUER": "the name authenticator apps show for the console",
    "EMAIL_URL": "where alert mail goes (django-environ email URL, e.g. "
    "`smtp+tls://user:pass@host:587`); the default prints mail to the console",
    "ADMINS": "who gets alert mail: `Ops:ops@example.com,oncall@example.com` (name optional)",
    "SERVER_EMAIL": "the sender of alert mail",
    "REDIS_URL": "Redis as the django-q2 broker and the shared cache instead of the ORM "
    "broker and the database table",
    "Q_WORKERS": "django-q2 workers per cluster",
    "Q_TIMEOUT": "seconds a task may run (must stay below `Q_RETRY`)",
    "Q_RETRY": "seconds before an unacknowledged task is handed out again",
    "Q_MAX_ATTEMPTS": "attempts per task",
    "Q_SAVE_LIMIT": "successful task results kept (`/healthz` needs them; negative: `tokens.W001`)",
    "Q_QUEUE_LIMIT": "tasks a cluster takes from the broker ahead (docs/workers.md)",
    "Q_POLL": "seconds between ORM-broker polls",
    "Q_BULK": "tasks taken from the broker at once",
    "Q_WEBHOOK_WORKERS": "workers of the separate `webhooks` cluster (docs/webhooks.md)",
    "TRUSTED_PROXY_COUNT": "reverse proxies that append to `X-Forwarded-For` (the source "
    "address of the token API, `/metrics` and the sign-in lockout); 0 ignores the header",
    "LOG_FORMAT": "`plain` or `json` lines on standard error",
    "LOG_LEVEL": "root log level",
}

HEADER = f"""\
# Configuration

<!-- Generated by `{COMMAND}` from tokens/conf.py and tokenconsole/settings.py.
     Do not edit by hand: tests/test_docs.py fails when this file is out of date. -->

Settings come from the environment, or from `.env` in the project directory (written by
`make run`, mode 600); the environment wins.

## Environment variables

Read by `tokenconsole/settings.py`. In the default column, `PRODUCTION` means
`DJANGO_ENV=production`.

| variable | meaning | default |
| --- | --- | --- |
"""

MIDDLE = """
Also read elsewhere: `WEB_HOST` and `WEB_PORT` (where `make serve` listens, default
`127.0.0.1` and `8000`; Makefile variables), `DEMO_PROVIDER_PORT` (`make demo`, 8765) and
`Q_CLUSTER_NAME` (django-q2: `Q_CLUSTER_NAME=webhooks manage.py qcluster` runs the webhook
cluster).

## Knobs (`tokens/conf.py`)

Every knob of the app itself, with its default. Set one from the environment as
`TOKEN_CONSOLE_<NAME>` (for example `TOKEN_CONSOLE_HTTP_TIMEOUT=5`) or in
`settings.TOKEN_CONSOLE`; values from the environment are converted to the default's type.

| knob | default | meaning |
| --- | --- | --- |
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def environment_variables(source: str) -> list[tuple[str, str]]:
    """(name, default source) of each `env.<type>("NAME", ...)` call, in the file's order."""
    found: dict[str, tuple[int, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        default = next((k.value for k in node.keywords if k.arg == "default"), None)
        shown = ast.get_source_segment(source, default) if default is not None else None
        found.setdefault(node.args[0].value, (node.lineno, shown or "unset"))
    return [(name, shown) for name, (_, shown) in sorted(found.items(), key=lambda i: i[1])]


def knob_groups(source: str) -> list[tuple[list[str], str]]:
    """DEFAULTS' keys grouped under the comment above them: [(names, comment)]."""
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    groups: list[tuple[list[str], str]] = []
    previous_end = 0
    for key, value in zip(*_defaults_dict(source), strict=True):
        lines = range(previous_end + 1, key.lineno)
        text = " ".join(comments[n] for n in lines if n in comments)
        if text or not groups:
            groups.append(([key.value], text))
        else:
            groups[-1][0].append(key.value)
        previous_end = value.end_lineno or key.lineno
    return groups


def _defaults_dict(source: str) -> tuple[list, list]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(getattr(t, "id", None) == "DEFAULTS" for t in targets):
                return node.value.keys, node.value.values
    raise ValueError(f"No DEFAULTS dict in {CONF}")


def _knob_default(value: object) -> str:
    return f"`{value!r}`" if value != "" else "empty"


def render() -> str:
    """The text of docs/configuration.md for the code as it is now."""
    from tokens.conf import DEFAULTS

    lines = [HEADER]
    for name, default in environment_variables(SETTINGS.read_text()):
        meaning = ENVIRONMENT.get(name, UNDOCUMENTED)
        lines.append(f"| `{name}` | {_cell(meaning)} | `{_cell(default)}` |\n")
    lines.append(MIDDLE)
    for names, comment in knob_groups(CONF.read_text()):
        knobs = "<br>".join(f"`{n}`" for n in names)
        defaults = "<br>".join(_cell(_knob_default(DEFAULTS[n])) for n in names)
        lines.append(f"| {knobs} | {defaults} | {_cell(comment)} |\n")
    return "".join(lines)


def main(argv: list[str]) -> int:
    """Rewrite docs/configuration.md, or with --check say whether it is up to date."""
    sys.path.insert(0, str(ROOT))
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run {COMMAND}")
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"Wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
