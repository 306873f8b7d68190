"""Settings for the Token Console, read from the environment or an optional .env file."""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from tokenconsole.deployment import (
    is_production,
    proxy_ssl_header,
    require_production_settings,
    require_trusted_proxies,
)
from tokens.conf import DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Written by `make run` (scripts/init_env.py), owner-only; tokens.W002 warns otherwise.
ENV_FILE = BASE_DIR / ".env"
environ.Env.read_env(ENV_FILE, overwrite=False)

# DJANGO_ENV=production switches on https-only defaults (secure cookies, SSL redirect,
# HSTS, 2FA for staff, hashed static files) and refuses to start without the secrets.
# Anything else is a laptop or a test run over plain http.
PRODUCTION = is_production(env.str("DJANGO_ENV", default="development"))

DEBUG = env.bool("DEBUG", default=False)
# An empty SECRET_KEY makes Django refuse to start, which is what production wants.
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Comma-separated Fernet keys: the first encrypts, every one decrypts (docs/operations.md).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# The same keys for django-fernet-fields (`fernet_fields`), used as Fernet keys as they are
# (no HKDF): tokens.fields reads FIELD_ENCRYPTION_KEYS itself; these keep the package in step.
FERNET_KEYS = FIELD_ENCRYPTION_KEYS
FERNET_USE_HKDF = False

if PRODUCTION:
    require_production_settings(
        secret_key=SECRET_KEY,
        encryption_keys=FIELD_ENCRYPTION_KEYS,
        hosts=ALLOWED_HOSTS,
        debug=DEBUG,
    )

# https: on by default in production only, so `make run` keeps working on plain http.
# Behind a TLS-terminating proxy, SECURE_PROXY_SSL_HEADER names the header it sets
# (HTTP_X_FORWARDED_PROTO); set it only when the proxy always overwrites that header.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(env.str("SECURE_PROXY_SSL_HEADER", default=""))
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe /healthz on the backend's own plain-http port.
SECURE_REDIRECT_EXEMPT = [r"^healthz\Z"]  # \Z: "healthz\n" is not exempt
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = []
if not SECURE_HSTS_PRELOAD:
    # Preloading is a request to browser vendors that binds every subdomain of the
    # domain for months; it is the domain owner's decision, so it is off unless asked for.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# The public base URL of this console; the OAuth redirect URI is built from it. Unset,
# `manage.py runconsole` (make run) sets it for its children from the address it serves.
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "tokens.apps.TokenConsoleAdminConfig",  # django.contrib.admin, with the dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",  # runserver serves static files the way production does
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    # Before django_q: the first app wins a command name, and tokens' `qcluster` (which
    # stops on SIGTERM, unlike django-q2's, issue #346) must win.
    "tokens",
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Lazy, like request.user: the token API never reads the user, so no query is added.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it only turns a login that axes refused into the lockout answer; no queries.
    "axes.middleware.AxesMiddleware",
]

# Axes first: it refuses a locked-out username + address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# granian under `make serve` (manage.py runconsole --server granian): worker processes,
# and threads per worker that run the WSGI application (granian's --blocking-threads).
# Measured on 2 cores (bench/README.md, "Token API"): 2 threads serve within 3 % of 1
# thread's rate with a lower legacy p99, and a request waiting on the provider (an
# on-demand refresh) no longer stalls its whole worker; granian's default pool (many
# threads contending for the GIL) halved the rate.
WEB_WORKERS = env.int("WEB_WORKERS", default=2)
WEB_THREADS = env.int("WEB_THREADS", default=2)

ROOT_URLCONF = "tokenconsole.urls"
WSGI_APPLICATION = "tokenconsole.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Local state (the SQLite file) lives in var/, which git ignores; only its owner may enter.
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(mode=0o700, exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the cluster share one file: WAL lets readers run beside the
    # writer, the busy timeout makes writers queue instead of failing with "database is
    # locked", and IMMEDIATE takes the write lock at BEGIN so a read-then-write
    # transaction (the refresh) cannot deadlock against another one.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Keep connections between requests and tasks: opening one costs more than the token
# API's whole answer, and on PostgreSQL a cluster worker would otherwise open and
# authenticate one per task. The health check reopens a kept connection the server
# dropped instead of failing the next request or task.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
if not PRODUCTION:
    # Files come from the apps here; an existing (empty) root keeps WhiteNoise quiet.
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
# WhiteNoise serves static files from the web process. Production serves what
# `collectstatic` wrote (hashed names, compressed, cached for ever); elsewhere files are
# found in the apps directly, so `make run` and the tests need no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
# Files served at the site's root: /favicon.ico, which browsers ask for on every page.
WHITENOISE_ROOT = BASE_DIR / "tokens" / "root_files"

LOGIN_URL = "admin:login"

# Admin sign-in lockout (django-axes): after AXES_FAILURE_LIMIT failed logins for one
# username from one address, that pair is refused (429) for AXES_COOLOFF_MINUTES, even
# with the right password. By pair, so one office's typos do not lock out a colleague and
# nobody elsewhere can lock an admin out. The address is the token API's own source
# address (REMOTE_ADDR unless TRUSTED_PROXY_COUNT proxies are configured).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "tokens.api.addresses.source_address"
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
# Not verbose: no "AXES: BEGIN" line at the start of every command.
AXES_VERBOSE = False

# Staff must confirm sign-in with a TOTP code (django-otp); on by default in production.
# Enrol a device with `manage.py totp_enrol USERNAME`.
REQUIRE_STAFF_2FA = env.bool("REQUIRE_STAFF_2FA", default=PRODUCTION)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Token Console")

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# ADMINS="Ops Team:ops@example.com,oncall@example.com" (the name is optional).
ADMINS = [
    tuple(entry.split(":", 1)) if ":" in entry else (entry, entry)
    for entry in env.list("ADMINS", default=[])
]
SERVER_EMAIL = env.str("SERVER_EMAIL", default="token-console@localhost")

# django-q2. The database, not the queue, is the source of truth: a lost task is
# recovered by the next sweep. `timeout` must stay below `retry`, or a slow task is
# handed to a second worker while the first still runs.
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "tokenconsole",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=60),
    "retry": env.int("Q_RETRY", default=90),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "ack_failures": True,
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=200),
    "poll": env.float("Q_POLL", default=0.5),
    "bulk": env.int("Q_BULK", default=1),
    "label": "Task queue",
    # `Q_CLUSTER_NAME=webhooks manage.py qcluster` (runconsole starts it) runs the webhook
    # deliveries and alert messages that TOKEN_CONSOLE_WEBHOOK_CLUSTER sends there.
    "ALT_CLUSTERS": {"webhooks": {"workers": env.int("Q_WEBHOOK_WORKERS", default=4)}},
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The default cache is per process without Redis (django-q2's ORM broker keeps its stats
# there). The token API's failed-authentication counts must be shared by every web process
# (`make serve` runs two): in Redis when it is configured, else in a database table that
# `manage.py createcachetable` makes (make run, demo and serve run it; so do the tests).
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    ),
    "api_throttle": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {
            "BACKEND": "tokens.cache.CountingDatabaseCache",
            "LOCATION": "tokens_api_throttle",
            # Django culls a third of the table when it is full: high, so many addresses
            # failing at once cannot wipe the counts of the others.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    ),
}

# Every knob of the app itself, with defaults, lives in tokens/conf.py; this dict
# overrides them. Values come from the environment as TOKEN_CONSOLE_<NAME>.
TOKEN_CONSOLE = {
    key.removeprefix("TOKEN_CONSOLE_"): value
    for key, value in env.ENVIRON.items()
    if key.startswith("TOKEN_CONSOLE_")
}
# How many reverse proxies in front of the console append to X-Forwarded-For: the app
# setting TRUSTED_PROXY_COUNT (tokens/conf.py holds its default; tokens.api.addresses reads
# it), set from the environment under that one name, not as TOKEN_CONSOLE_TRUSTED_PROXY_COUNT.
if "TRUSTED_PROXY_COUNT" in TOKEN_CONSOLE:
    raise ImproperlyConfigured(
        "Set TRUSTED_PROXY_COUNT, not TOKEN_CONSOLE_TRUSTED_PROXY_COUNT (one name, one value)."
    )
if "TRUSTED_PROXY_COUNT" in env.ENVIRON:
    TOKEN_CONSOLE["TRUSTED_PROXY_COUNT"] = env.int("TRUSTED_PROXY_COUNT")
if PRODUCTION:
    proxy_count = TOKEN_CONSOLE.get("TRUSTED_PROXY_COUNT", DEFAULTS["TRUSTED_PROXY_COUNT"])
    require_trusted_proxies(ssl_header=SECURE_PROXY_SSL_HEADER, proxy_count=proxy_count)

# Logging. Every handler carries the redaction filter (tokens/logs.py), so no logger, ours
# or a library's, can write a token, API key or client secret. LOG_FORMAT=json writes one
# JSON object per line, with the fields of our key=value event lines as keys.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
# Error reports (the admins' error mail) blank every request field that can carry a
# secret: see tokenconsole/reporting.py.
DEFAULT_EXCEPTION_REPORTER = "tokenconsole.reporting.SecretSafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "tokenconsole.reporting.SecretSafeExceptionReporterFilter"
# TOTP device keys and static backup codes are never shown in the admin.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "tokens.logs.RedactSecretsFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        # runserver's access log leaves out static files and the favicon served fine.
        "quiet_static": {
            "()": "tokens.logs.SkipPathsFilter",
            "prefixes": ["/" + STATIC_URL.lstrip("/"), "/favicon.ico"],
        },
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "tokens.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        },
        # Django's own 500-error mail, redefined here so that it is filtered too. It then
        # carries the message, not the traceback with each frame's local variables.
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's defaults give these loggers handlers of their own, unfiltered:
        # replace them, so their records reach only the handlers above.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.server": {
            "handlers": [],
            "level": "INFO",
            "propagate": True,
            "filters": ["quiet_static"],
        },
        # urllib3 logs request lines at DEBUG; they carry no secrets in our calls,
        # but nothing it says is worth the risk of a future change that would.
        "urllib3": {"level": "WARNING"},
    },
}
