"""Settings for the Token Console, read from the environment or an optional .env file."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# An empty SECRET_KEY makes Django refuse to start, which is what production wants.
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Comma-separated Fernet keys: the first encrypts, every one decrypts (see README, key rotation).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# The public base URL of this console; the OAuth redirect URI is built from it.
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "tokens",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

# Local state (the SQLite file) lives in var/, which git ignores.
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)
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
# With PostgreSQL, set CONN_MAX_AGE (e.g. 300) so a cluster worker keeps its connection
# instead of opening and authenticating one per task; the health check makes a kept
# connection that the server dropped reconnect instead of failing the next task.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
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
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "admin:login"

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
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Every knob of the app itself, with defaults, lives in tokens/conf.py; this dict
# overrides them. Values come from the environment as TOKEN_CONSOLE_<NAME>.
TOKEN_CONSOLE = {
    key.removeprefix("TOKEN_CONSOLE_"): value
    for key, value in env.ENVIRON.items()
    if key.startswith("TOKEN_CONSOLE_")
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs request lines at DEBUG; they carry no secrets in our calls,
        # but nothing it says is worth the risk of a future change that would.
        "urllib3": {"level": "WARNING"},
    },
}
