"""Test settings: the real settings module with test-only values from the environment."""

import os

from cryptography.fernet import Fernet

os.environ.setdefault("SECRET_KEY", "test-only-" + Fernet.generate_key().decode())
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())
os.environ.setdefault("CONSOLE_BASE_URL", "http://testserver")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("DJANGO_ENV", "development")  # test_deploy.py runs production

from tokenconsole.settings import *  # noqa: F403
from tokenconsole.settings import BASE_DIR, DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test logins
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ADMINS = [("Ops", "ops@example.com")]
# Password-only admin logins (the browser test); tests/test_twofactor.py turns it on.
REQUIRE_STAFF_2FA = False

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so threads in concurrency tests share one real database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")}

TOKEN_CONSOLE = {
    # Short timeouts keep fault tests quick; the fake provider hangs longer than this.
    "HTTP_CONNECT_TIMEOUT": 2.0,
    "HTTP_TIMEOUT": 1.0,
}

# Test threads (the live server's, the concurrency tests') must not keep connections to
# the test database past their work, or PostgreSQL cannot drop it at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0
