"""Write a local .env with fresh secrets, unless one exists. Used by `make run`.

Never prints the secrets it writes; the file is created readable by its owner only.
"""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"

TEMPLATE = """\
# Local settings for the Token Console, written by `make run` on {host}.
# Keep this file private: it holds the keys that decrypt every stored token.
DEBUG=true
SECRET_KEY={secret_key}
# Comma-separated Fernet keys; the first encrypts, all decrypt (docs/operations.md).
FIELD_ENCRYPTION_KEYS={fernet_key}
# The console's public address, which the OAuth redirect URI is built from. Unset, it
# follows the address `make run PORT=...` listens on; set it behind a proxy.
# CONSOLE_BASE_URL=https://tokens.example.com
"""


def main() -> int:
    """Create .env if missing and say what happened."""
    if ENV_FILE.exists():
        print(f"Using the existing {ENV_FILE.name} (delete it to start over with new keys).")
        return 0
    text = TEMPLATE.format(
        host=os.uname().nodename,
        secret_key=secrets.token_urlsafe(50),
        fernet_key=Fernet.generate_key().decode(),
    )
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    print(f"Wrote {ENV_FILE.name} with a fresh SECRET_KEY and FIELD_ENCRYPTION_KEYS.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
