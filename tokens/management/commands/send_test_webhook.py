"""manage.py send_test_webhook CLIENT: deliver a `ping` event and print the answer."""

from django.core.management.base import BaseCommand, CommandError

from tokens.models import ApiClient, Webhook, WebhookDelivery
from tokens.services.webhooks import webhook_ping


class Command(BaseCommand):
    help = "Deliver a signed `ping` event to an API client's webhook and report the answer."

    def add_arguments(self, parser):
        parser.add_argument("client", help="The API client's name.")

    def handle(self, *args, client: str, **options) -> None:
        found = ApiClient.objects.filter(name=client).first()
        if found is None:
            raise CommandError(f"No API client named {client!r}.")
        webhook = Webhook.objects.filter(client=found).first()
        if webhook is None:
            raise CommandError(f"{client} has no webhook: set its webhook URL in the admin.")
        delivery = webhook_ping(webhook=webhook)
        if delivery.response_code is None:
            raise CommandError(f"Ping to {webhook.url} failed: {delivery.error}")
        answer = f": {delivery.answer}" if delivery.answer else ""
        self.stdout.write(
            f"Ping {delivery.event_id} to {webhook.url}: HTTP {delivery.response_code} "
            f"in {delivery.duration_ms} ms{answer}"
        )
        if delivery.status != WebhookDelivery.Status.DELIVERED:
            raise CommandError("The receiver did not accept the ping (see its answer above).")
