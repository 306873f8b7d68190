"""Create or update the django-q2 schedules: the org and webhook sweeps every minute, the
history prune daily."""

from django.core.management.base import BaseCommand
from django_q.models import Schedule

SWEEP_NAME = "tokens: sweep due orgs"
PRUNE_NAME = "tokens: prune old token events"
WEBHOOK_SWEEP_NAME = "tokens: sweep webhook deliveries and alerts"

# name, task, timing, how the output describes it
SCHEDULES = [
    (SWEEP_NAME, "tokens.tasks.sweep_due_orgs",
     {"schedule_type": Schedule.MINUTES, "minutes": 1}, "every minute"),
    (WEBHOOK_SWEEP_NAME, "tokens.tasks.sweep_webhooks",
     {"schedule_type": Schedule.MINUTES, "minutes": 1}, "every minute"),
    (PRUNE_NAME, "tokens.tasks.prune_token_events", {"schedule_type": Schedule.DAILY}, "daily"),
]  # fmt: skip


class Command(BaseCommand):
    help = (
        "Create (idempotently) the every-minute schedules that refresh due orgs and deliver "
        "webhooks and alerts, and the daily one that prunes token events past "
        "TOKEN_EVENT_RETENTION_DAYS."
    )

    def handle(self, *args: object, **options: object) -> None:
        # catch_up is off in Q_CLUSTER too: after downtime one sweep finds every due
        # org by itself, so replaying missed minutes would only queue duplicates.
        for name, func, timing, every in SCHEDULES:
            schedule, created = Schedule.objects.update_or_create(
                name=name, defaults={"func": func, "repeats": -1, **timing}
            )
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} schedule {schedule.name!r} ({every}).")
