"""The django-q2 queue as tests see it, whichever broker is configured (ORM or Redis)."""

from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from tokens.conf import webhook_cluster_name


def queued_tasks(cluster: str | None = None) -> list[dict]:
    """The tasks waiting in a cluster's queue (the main one by default), oldest first,
    without taking them off it."""
    broker = get_broker(cluster)
    if broker.__class__.__name__ == "Redis":
        packages = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        from django_q.models import OrmQ

        packages = [e.payload for e in OrmQ.objects.filter(key=broker.list_key).order_by("id")]
    return [SignedPackage.loads(package) for package in packages]


def purge_queue() -> None:
    """Empty the queues (the main one and the webhook cluster's), as a broker restart
    without persistence would."""
    get_broker().purge_queue()
    if cluster := webhook_cluster_name():
        get_broker(cluster).purge_queue()
