"""Refresh tokens now, through the same service as the schedule."""

import time
from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from tokens import clock, services
from tokens.exceptions import OrgNotRefreshable
from tokens.models import Org, TokenEvent

PROGRESS_EVERY = 50


class Command(BaseCommand):
    help = (
        "Refresh the tokens that are due now, of the named orgs (--org) or of every connected "
        "org; --force refreshes them even if not due. Exits 1 when any refresh failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--org",
            action="append",
            default=[],
            metavar="SLUG",
            help="Refresh this org; repeat it for several. Default: every connected org.",
        )
        parser.add_argument("--due", action="store_true", help="Only orgs whose refresh is due.")
        parser.add_argument("--force", action="store_true", help="Refresh even if not due.")

    def handle(self, *args: object, org: list[str], due: bool, force: bool, **opts: object) -> None:
        orgs = self._select(org, due=due)
        outcomes = self._refresh_each(orgs, force=force)
        failed = outcomes["failed"]
        self.stdout.write(f"{len(orgs) - failed} of {len(orgs)} orgs ok, {failed} failed.")
        self.stdout.write(what_happened(outcomes, due=due))
        if failed:
            raise CommandError(f"{failed} refresh(es) failed; see the lines above.", returncode=1)

    def _refresh_each(self, orgs: list[Org], *, force: bool) -> Counter:
        """Refresh the orgs one by one, a line each; count the outcomes ("failed" too)."""
        outcomes: Counter = Counter()
        started = time.monotonic()
        for position, target in enumerate(orgs, start=1):
            try:
                result = services.token_refresh(
                    org_id=target.pk, trigger=TokenEvent.Trigger.COMMAND, force=force
                )
                line, ok = f"{target.slug}: {result.outcome} — {result.message}", result.ok
                outcomes[result.outcome] += 1
            except OrgNotRefreshable as exc:
                line, ok = f"{target.slug}: refused — {exc}", False
            outcomes["failed"] += not ok
            self.stdout.write(line if ok else self.style.ERROR(line))
            if position % PROGRESS_EVERY == 0:
                rate = position / max(time.monotonic() - started, 1e-6)
                self.stdout.write(f"... {position}/{len(orgs)} done ({rate:.1f}/s)")
        return outcomes

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


def what_happened(outcomes: Counter, *, due: bool) -> str:
    """One line: how many were refreshed, and that --force exists when some were not due."""
    if not outcomes:
        return "No connected org was due." if due else "No connected org: nothing to refresh."
    refreshed, not_due = outcomes["refreshed"], outcomes["not_due"]
    if not not_due:
        return f"Refreshed {refreshed}."
    lead = f"Refreshed {refreshed}; {not_due}" if refreshed else f"Nothing was due: {not_due}"
    return f"{lead} not due yet, left for their planned refresh. --force refreshes them now anyway."
