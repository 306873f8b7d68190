"""The django-q2 queue as tests see it, whichever broker is configured (ORM or Redis)."""

from django_q.brokers import get_broker
from django_q.signing import SignedPackage


def queued_tasks() -> list[dict]:
    """The tasks waiting in the queue, oldest first, without taking them off it."""
    broker = get_broker()
    if broker.__class__.__name__ == "Redis":
        packages = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        from django_q.models import OrmQ

        packages = [entry.payload for entry in OrmQ.objects.order_by("id")]
    return [SignedPackage.loads(package) for package in packages]


def purge_queue() -> None:
    """Empty the queue, as a broker restart without persistence would."""
    get_broker().purge_queue()
