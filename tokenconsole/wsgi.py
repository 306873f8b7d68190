"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenconsole.settings")

application = get_wsgi_application()

# Only a web server counts served tokens off the request path (tests count in-process).
from tokens.services.served import served_flush_in_background  # noqa: E402

served_flush_in_background()
