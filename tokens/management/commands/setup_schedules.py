"""Create or update the django-q2 schedules: the org sweep and the webhook sweep."""

from django.core.management.base import BaseCommand
from django_q.models import Schedule

SWEEP_NAME = "tokens: sweep due orgs"
WEBHOOK_SWEEP_NAME = "tokens: sweep webhook deliveries and alerts"

SCHEDULES = {
    SWEEP_NAME: "tokens.tasks.sweep_due_orgs",
    WEBHOOK_SWEEP_NAME: "tokens.tasks.sweep_webhooks",
}


class Command(BaseCommand):
    help = "Create (idempotently) the every-minute schedules: due orgs, webhook deliveries."

    def handle(self, *args: object, **options: object) -> None:
        # catch_up is off in Q_CLUSTER too: after downtime one sweep finds every due
        # org by itself, so replaying missed minutes would only queue duplicates.
        for name, func in SCHEDULES.items():
            schedule, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": 1,
                    "repeats": -1,
                },
            )
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} schedule {schedule.name!r} (every minute).")
