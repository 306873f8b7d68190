"""manage.py create_api_client NAME --org SLUG ... [--all-orgs] [--allow-cidr CIDR ...]"""

import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tokens import services
from tokens.models import Org


class Command(BaseCommand):
    help = "Create a token API client and print its key, which is shown only this once."

    def add_arguments(self, parser):
        parser.add_argument(
            "name", help="A name for the client, e.g. the flow or service using it."
        )
        parser.add_argument(
            "--org",
            action="append",
            default=[],
            metavar="SLUG",
            help="An org the client may read; repeat it for several.",
        )
        parser.add_argument("--all-orgs", action="store_true", help="May read every org.")
        parser.add_argument(
            "--allow-cidr",
            action="append",
            default=[],
            metavar="CIDR",
            help="Accept the key only from this network (e.g. 10.0.0.0/8); repeat it for "
            "several. Default: from anywhere.",
        )
        parser.add_argument(
            "--legacy-from",
            default="",
            help="Accept the sample app's /api/token headers with this X-From; "
            "the X-API-Phrase is then read from a prompt or standard input.",
        )

    def handle(self, *args, name, org, all_orgs, allow_cidr, legacy_from, **options):
        if not org and not all_orgs:
            raise CommandError("Give at least one --org SLUG, or --all-orgs.")
        orgs = list(Org.objects.filter(slug__in=org))
        unknown = sorted(set(org) - {o.slug for o in orgs})
        if unknown:
            raise CommandError(f"No org with slug: {', '.join(unknown)}. Nothing was created.")
        passphrase = self._read_passphrase() if legacy_from else ""
        try:
            client, key = services.api_client_create(
                name=name,
                orgs=orgs,
                all_orgs=all_orgs,
                allowed_networks="\n".join(allow_cidr),
                legacy_from=legacy_from,
                legacy_passphrase=passphrase,
            )
        except ValidationError as exc:
            problems = "; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())
            raise CommandError(f"{problems} Nothing was created.") from None
        scope = "all orgs" if all_orgs else ", ".join(o.slug for o in orgs)
        self.stderr.write(
            f"Created API client {client.name!r} (prefix tc_{client.key_prefix}, scope: {scope})."
            " Its key follows, on standard output, shown only this once:"
        )
        self.stdout.write(key)

    def _read_passphrase(self) -> str:
        prompt = "Legacy X-API-Phrase: "
        passphrase = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline()
        passphrase = passphrase.rstrip("\n")
        if not passphrase:
            raise CommandError("--legacy-from needs an X-API-Phrase; none was given.")
        return passphrase
