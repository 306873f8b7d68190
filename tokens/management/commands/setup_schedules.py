"""Create or update the django-q2 schedule that sweeps due orgs every minute."""

from django.core.management.base import BaseCommand
from django_q.models import Schedule

SWEEP_NAME = "tokens: sweep due orgs"


class Command(BaseCommand):
    help = "Create (idempotently) the every-minute schedule that refreshes due orgs."

    def handle(self, *args: object, **options: object) -> None:
        # catch_up is off in Q_CLUSTER too: after downtime one sweep finds every due
        # org by itself, so replaying missed minutes would only queue duplicates.
        schedule, created = Schedule.objects.update_or_create(
            name=SWEEP_NAME,
            defaults={
                "func": "tokens.tasks.sweep_due_orgs",
                "schedule_type": Schedule.MINUTES,
                "minutes": 1,
                "repeats": -1,
            },
        )
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} schedule {schedule.name!r} (every minute).")
