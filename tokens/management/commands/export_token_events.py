"""manage.py export_token_events --since DATE [--until DATE] [--format jsonl] [--output FILE]"""

import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from tokens import selectors


class Command(BaseCommand):
    help = (
        "Write the token history from --since (inclusive) to --until (exclusive) as JSON "
        "Lines, oldest first, one object per event with these fields: "
        + ", ".join(selectors.EXPORT_FIELDS)
        + ". Times are ISO 8601 in UTC; tokens appear only as fingerprints. "
        "See docs/history.md. Run it before prune_token_events to keep old events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="ISO date or datetime (UTC if naive).")
        parser.add_argument("--until", help="ISO date or datetime (UTC if naive); default: now.")
        parser.add_argument(
            "--format", choices=["jsonl"], default="jsonl", help="jsonl: one JSON object a line."
        )
        parser.add_argument("--output", help="Write to this file instead of standard output.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Events per query.")

    def handle(self, *args: object, since: str, until: str | None, **options) -> None:
        start = parse_moment(since, "--since")
        end = parse_moment(until, "--until") if until else None
        if end is not None and end <= start:
            raise CommandError("--until must be later than --since.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        rows = selectors.token_events_export(
            since=start, until=end, batch_size=options["batch_size"]
        )
        if not options["output"]:
            for row in rows:
                self.stdout.write(json.dumps(row, ensure_ascii=False))
            return
        try:
            with open(options["output"], "w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise CommandError(f"Cannot write {options['output']}: {exc.strerror}.") from None


def parse_moment(text: str, option: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (UTC when it names no zone)."""
    try:
        moment = parse_datetime(text) or (
            datetime.combine(day, datetime.min.time()) if (day := parse_date(text)) else None
        )
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"{option} {text!r} is not an ISO date or datetime (2026-01-31).")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
