#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    # Files this process and its children create (var/, the SQLite database and its
    # -wal/-shm files, collected static files) are the owner's only: the database holds
    # sessions and API client hashes. runconsole's web server and cluster inherit it.
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenconsole.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
