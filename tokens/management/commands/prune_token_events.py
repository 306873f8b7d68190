"""manage.py prune_token_events [--dry-run] [--days N] [--batch-size N]"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens import services
from tokens.conf import app_settings


class Command(BaseCommand):
    help = (
        "Delete token events older than TOKEN_EVENT_RETENTION_DAYS (or --days), in short "
        "batches, keeping the latest event of each kind for each org. /metrics totals stay. "
        "Export first if you must keep them: export_token_events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count only; delete nothing.")
        parser.add_argument("--days", type=int, help="Retention in days (default: the setting).")
        parser.add_argument("--batch-size", type=int, help="Events per transaction.")

    def handle(
        self, *args: object, dry_run: bool, days: int | None, batch_size: int | None, **options
    ) -> None:
        if days is None and app_settings.TOKEN_EVENT_RETENTION_DAYS <= 0:
            self.stdout.write("Retention is off (TOKEN_EVENT_RETENTION_DAYS=0): nothing to do.")
            return
        days = app_settings.TOKEN_EVENT_RETENTION_DAYS if days is None else days
        batch_size = app_settings.TOKEN_EVENT_PRUNE_BATCH if batch_size is None else batch_size
        if days < 1:
            raise CommandError(f"--days must be at least 1 (got {days}).")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1 (got {batch_size}).")
        result = services.token_events_prune(days=days, batch_size=batch_size, dry_run=dry_run)
        self.stdout.write(self.style.SUCCESS(result.summary()))
