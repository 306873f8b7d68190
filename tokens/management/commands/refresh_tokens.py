"""Refresh tokens now, through the same service as the schedule."""

import time

from django.core.management.base import BaseCommand, CommandError

from tokens import clock, services
from tokens.exceptions import OrgNotRefreshable
from tokens.models import Org, TokenEvent

PROGRESS_EVERY = 50


class Command(BaseCommand):
    help = (
        "Refresh orgs' tokens now: the named orgs (--org), the due ones (--due), or every "
        "connected org. Exits 1 when any refresh failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", action="append", default=[], metavar="SLUG")
        parser.add_argument("--due", action="store_true", help="Only orgs whose refresh is due.")
        parser.add_argument("--force", action="store_true", help="Refresh even if not due.")

    def handle(self, *args: object, org: list[str], due: bool, force: bool, **opts: object) -> None:
        orgs = self._select(org, due=due)
        failed = 0
        started = time.monotonic()
        for position, target in enumerate(orgs, start=1):
            try:
                result = services.token_refresh(
                    org_id=target.pk, trigger=TokenEvent.Trigger.COMMAND, force=force
                )
                line, ok = f"{target.slug}: {result.outcome} — {result.message}", result.ok
            except OrgNotRefreshable as exc:
                line, ok = f"{target.slug}: refused — {exc}", False
            failed += not ok
            self.stdout.write(line if ok else self.style.ERROR(line))
            if position % PROGRESS_EVERY == 0:
                rate = position / max(time.monotonic() - started, 1e-6)
                self.stdout.write(f"... {position}/{len(orgs)} done ({rate:.1f}/s)")
        self.stdout.write(f"{len(orgs) - failed} of {len(orgs)} orgs ok, {failed} failed.")
        if failed:
            raise CommandError(f"{failed} refresh(es) failed; see the lines above.", returncode=1)

    def _select(self, slugs: list[str], *, due: bool) -> list[Org]:
        if slugs:
            found = {o.slug: o for o in Org.objects.filter(slug__in=slugs)}
            missing = [slug for slug in slugs if slug not in found]
            if missing:
                raise CommandError(f"No org with slug: {', '.join(missing)}. Nothing refreshed.")
            return [found[slug] for slug in slugs]
        orgs = Org.objects.filter(status=Org.Status.CONNECTED).order_by("slug")
        if due:
            orgs = orgs.filter(token__next_refresh_at__lte=clock.now())
        return list(orgs)
