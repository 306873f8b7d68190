"""Create the "Demo provider" integration and a demo org, pointing at the fake provider."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tokens.models import Integration, Org

DEMO_CLIENT_ID = "demo-client"
# Not a real credential: the fake provider that `make demo` starts accepts this value.
DEMO_CLIENT_SECRET = "demo-client-secret"


class Command(BaseCommand):
    help = "Create (or update) a Demo provider integration and a demo org for `make demo`."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--provider-url",
            default="http://127.0.0.1:8765",
            help="Where the fake provider of `make demo` listens (DEMO_PROVIDER_PORT).",
        )

    def handle(self, *args: object, provider_url: str, **options: object) -> None:
        base = provider_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError("--provider-url must be an http(s) URL, e.g. http://127.0.0.1:8765")
        with transaction.atomic():
            integration, _ = Integration.objects.update_or_create(
                name="Demo provider",
                defaults={
                    "provider": "webex",
                    "client_id": DEMO_CLIENT_ID,
                    "client_secret": DEMO_CLIENT_SECRET,
                    "authorize_url": f"{base}/v1/authorize",
                    "token_url": f"{base}/v1/access_token",
                    "userinfo_url": f"{base}/v1/people/me",
                    "revocation_url": f"{base}/v1/authorizations",
                    "scopes": "cjp:config_read cjp:config_write spark:people_read",
                },
            )
            org, created = Org.objects.get_or_create(
                slug="demo-org", defaults={"name": "Demo org", "integration": integration}
            )
        verb = "Created" if created else "Kept"
        self.stdout.write(f"{verb} org {org.slug!r} on integration {integration.name!r} ({base}).")
