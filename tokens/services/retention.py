"""Retention of the token history: delete old events in short batches, keep what matters.

Events older than TOKEN_EVENT_RETENTION_DAYS go, TOKEN_EVENT_PRUNE_BATCH at a time: each
batch is one indexed read and one DELETE of at most that many ids, its own short
transaction, so refreshes recording events never wait long behind the prune. The latest
event of each kind for each org is kept whatever its age, so an org's page still tells when
it last connected, refreshed or failed. Orgs are told apart by the slug each event keeps,
so the history of a deleted org and the org-less key rotations are pruned the same way.

TokenEventRollup is not touched: /metrics counts pruned events too, and never goes down.
Only an event with a newer one of the same org and kind is deleted, so two prunes running
at once (the schedule and the command) can never delete the latest together.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet

from tokens import clock
from tokens.models import TokenEvent


@dataclass(frozen=True)
class PruneResult:
    """What a prune deleted (or, on a dry run, would delete) and what it kept."""

    cutoff: datetime
    deleted: int
    kept_latest: int  # older than the cutoff, kept as the latest of their kind for their org
    dry_run: bool

    def summary(self) -> str:
        """One line for the command, the task result and the log."""
        verb = "Would delete" if self.dry_run else "Deleted"
        return (
            f"{verb} {self.deleted} token events from before {self.cutoff:%Y-%m-%d %H:%M} UTC; "
            f"kept {self.kept_latest} older ones, the latest of their kind for their org"
        )


def token_events_prunable(*, cutoff: datetime) -> QuerySet:
    """Events older than `cutoff` that have a newer event of the same kind for their org."""
    newer = TokenEvent.objects.filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(id__gt=OuterRef("id")),
        org_slug=OuterRef("org_slug"),
        kind=OuterRef("kind"),
        created_at__gte=OuterRef("created_at"),
    )
    return TokenEvent.objects.filter(Exists(newer), created_at__lt=cutoff)


def token_events_prune(
    *,
    days: int,
    batch_size: int,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete events older than `days` days, `batch_size` per transaction (see module doc).

    A dry run reads the same batches and deletes nothing. `on_batch` gets each batch's size.
    """
    if days < 1 or batch_size < 1:
        raise ValueError("days and batch_size must be at least 1")
    cutoff = clock.now() - timedelta(days=days)
    prunable = token_events_prunable(cutoff=cutoff).order_by("created_at", "id")
    deleted, after = 0, None
    while True:
        batch = prunable
        if after is not None:
            # Keyset: rows past the last one seen, read from the (created_at, id) index.
            batch = batch.filter(
                Q(created_at__gt=after[0]) | Q(id__gt=after[1]), created_at__gte=after[0]
            )
        rows = list(batch.values_list("created_at", "id")[:batch_size])
        if not rows:
            break
        if not dry_run:
            TokenEvent.objects.filter(pk__in=[pk for _, pk in rows]).delete()
        deleted += len(rows)
        after = rows[-1]
        if on_batch is not None:
            on_batch(len(rows))
    older = TokenEvent.objects.filter(created_at__lt=cutoff).count()
    kept = older - deleted if dry_run else older
    return PruneResult(cutoff=cutoff, deleted=deleted, kept_latest=kept, dry_run=dry_run)
