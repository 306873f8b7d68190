"""Settings for the bare Django view of bench/token_api.py: the console's own settings
and middleware, with bench/bare_django_urls.py in front of the console's URLconf."""

from tokenconsole.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_django_urls"
