"""manage.py import_seed_env PATH --org SLUG [--integration NAME] [--name ORG_NAME] [--dry-run]"""

import re
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from tokens import services
from tokens.conf import console_base_url

REQUIRED = ("CLIENT_ID", "CLIENT_SECRET", "ORG_ID", "ACCESS_TOKEN", "REFRESH_TOKEN")
LEGACY = ("FROM", "PASSPHRASE")
KNOWN = (*REQUIRED, *LEGACY, "SOURCE_IP")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = re.compile(r"""(["'])(?P<value>.*?)\1\s*(#.*)?""")
# What sample .env templates ship instead of real values.
_PLACEHOLDER = re.compile(r"<.*>|your[-_ ].*|change[-_ ]?me|todo|x{3,}|placeholder", re.I)


class Command(BaseCommand):
    help = (
        "Import the org of the single-org sample app from its .env: integration, org, "
        "tokens and an API client for its /api/token headers. Nothing is printed that is secret."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The sample app's .env file.")
        parser.add_argument("--org", required=True, metavar="SLUG", help="Slug of the new org.")
        parser.add_argument(
            "--integration",
            default="Webex",
            metavar="NAME",
            help="The integration to create, or reuse when its client id and secret match "
            "(default: Webex).",
        )
        parser.add_argument("--name", default="", metavar="ORG_NAME", help="Default: the slug.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check the file and show what would be created, without creating anything.",
        )

    def handle(
        self,
        *args: object,
        path: str,
        org: str,
        integration: str,
        name: str,
        dry_run: bool,
        **options: object,
    ) -> None:
        values = checked_values(read_env_file(Path(path)), path)
        try:
            result = services.org_import_seed(
                slug=org,
                org_name=name or org,
                integration_name=integration,
                client_id=values["CLIENT_ID"],
                client_secret=values["CLIENT_SECRET"],
                org_id=values["ORG_ID"],
                access_token=values["ACCESS_TOKEN"],
                refresh_token=values["REFRESH_TOKEN"],
                legacy_from=values.get("FROM", ""),
                legacy_passphrase=values.get("PASSPHRASE", ""),
                allowed_networks=values.get("SOURCE_IP", ""),
                dry_run=dry_run,
            )
        except ValidationError as exc:
            raise CommandError(f"{problems(exc)} Nothing was created.") from None
        self._report(result, dry_run=dry_run)
        if dry_run:
            self.stdout.write("Dry run: nothing was created. Run it without --dry-run to import.")

    def _report(self, result: services.SeedImport, *, dry_run: bool) -> None:
        """What was created (fingerprints and names only); "Would ..." in a dry run."""
        create, reuse = ("Would create", "Would reuse") if dry_run else ("Created", "Reused")
        org, token = result.org, result.token
        verb = create if result.integration_created else reuse
        self.stdout.write(f"{verb} integration {result.integration.name!r}.")
        self.stdout.write(
            f"{create} org {org.slug!r} ({org.name}), connected: provider org "
            f"{org.provider_org_id}, cluster {org.cluster_id or 'unknown'}."
        )
        self.stdout.write(
            f"Token v{token.version}: access {token.access_fingerprint}, refresh "
            f"{token.refresh_fingerprint}. Its expiry is unknown, so the next sweep refreshes it."
        )
        if result.api_client is None:
            was = "would be" if dry_run else "was"
            self.stdout.write(
                f"No FROM and PASSPHRASE: no API client for /api/token {was} created."
            )
            return
        endpoint = console_base_url() + reverse("tokens:api-legacy-token")
        self.stdout.write(
            f"{create} API client {result.api_client.name!r}: point the flow at {endpoint} "
            "with its X-Organization-Id, X-From and X-API-Phrase headers unchanged."
        )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines with optional `export`, quotes and # comments; blank lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CommandError(f"No file at {path}. Nothing was created.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read {path}: {type(exc).__name__}.") from None
    values = {}
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not _KEY.fullmatch(key.strip()):
            # The line is not echoed: it may hold a secret.
            raise CommandError(f"{path}, line {number}: not KEY=value. Nothing was created.")
        values[key.strip()] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    quoted = _QUOTED.fullmatch(value)
    if quoted:
        return quoted["value"]
    return re.split(r"\s+#", value, maxsplit=1)[0]


def checked_values(values: dict[str, str], path: str) -> dict[str, str]:
    """The sample's keys, refused when missing, empty or still a template placeholder."""
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        raise CommandError(f"{path} lacks {', '.join(missing)}. Nothing was created.")
    for key in KNOWN:
        value = values.get(key)
        if value is not None and _PLACEHOLDER.fullmatch(value):
            raise CommandError(
                f"{key} in {path} is still a placeholder: put the real value in. "
                "Nothing was created."
            )
    empty = [key for key in REQUIRED if not values[key]]
    if empty:
        raise CommandError(f"Empty in {path}: {', '.join(empty)}. Nothing was created.")
    if sum(bool(values.get(key)) for key in LEGACY) == 1:
        absent = next(key for key in LEGACY if not values.get(key))
        raise CommandError(
            f"{absent} is missing or empty in {path}: FROM and PASSPHRASE go together "
            "(set both for /api/token, or neither). Nothing was created."
        )
    return values


def problems(exc: ValidationError) -> str:
    """A ValidationError as one line, with the field names when it has them."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
    return " ".join(exc.messages)
