"""GET /healthz: is the database reachable, is the task cluster doing work, do the
encryption keys decrypt what is stored, how are the orgs.

For load balancers and the supervisor that restarts a stuck cluster: no authentication,
no secrets, never cached. 503 when the database is down, no cluster has done work lately,
or the keys decrypt none of the stored secrets (a wrong key: no token can be served).

Cluster liveness is the newest task a worker finished, read from django-q2's Success rows
in the database. The alternatives fall short: django-q2's Stat lives in the broker, and
the ORM broker keeps it in Django's cache, which is per process without Redis, so the web
process would never see it; a process that is up can still have stopped taking tasks
(django-q2 #23); and a heartbeat row of our own would need a new model. The per-minute
sweep is a task, so a working cluster always has a recent Success row, whether or not any
org is due.
"""

import logging
from datetime import datetime

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from . import clock, selectors, services
from .conf import app_settings
from .exceptions import EncryptionKeyError

logger = logging.getLogger(__name__)


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The console's health as JSON; 503 when the database, the cluster or the keys fail."""
    try:
        orgs = selectors.org_status_counts()
        last_task_at = selectors.cluster_last_task_at()
        encryption = encryption_health()
        database = {"ok": True}
    except DatabaseError as exc:
        # Only the exception's class: a driver's message can name hosts and users.
        logger.warning("health check: database unavailable (%s)", type(exc).__name__)
        orgs, last_task_at = None, None
        encryption = {"ok": False, "status": "unknown"}
        database = {"ok": False, "error": type(exc).__name__}
    cluster = cluster_health(last_task_at)
    if not database["ok"] or not cluster["alive"] or encryption.get("wrong_keys"):
        status = "down"
    elif orgs["needs_reconnect"] or not encryption["ok"]:
        status = "degraded"  # serving, but some org or stored secret needs a human
    else:
        status = "ok"
    body = {
        "status": status,
        "database": database,
        "cluster": cluster,
        "encryption": encryption,
        "orgs": orgs,
    }
    response = JsonResponse(body, status=503 if status == "down" else 200)
    response["Cache-Control"] = "no-store"
    return response


def cluster_health(last_task_at: datetime | None) -> dict:
    """Whether a cluster finished a task within HEALTH_CLUSTER_MAX_AGE seconds."""
    max_age = app_settings.HEALTH_CLUSTER_MAX_AGE
    age = (clock.now() - last_task_at).total_seconds() if last_task_at else None
    return {
        # A finish time further in the future than the allowed clock skew proves nothing.
        "alive": age is not None and -app_settings.CLOCK_SKEW_TOLERANCE <= age <= max_age,
        "last_seen": last_task_at.isoformat() if last_task_at else None,
        "age_seconds": int(age) if age is not None else None,
        "max_age_seconds": max_age,
    }


def encryption_health() -> dict:
    """Whether the keys decrypt the newest stored value of each encrypted column (no value shown).

    `wrong_keys` when values are stored and none decrypts, or the keys are missing or
    malformed: then no token can be served, and the console is down.
    """
    try:
        sample = services.encryption_keys_sample()
    except EncryptionKeyError:
        logger.warning("health check: FIELD_ENCRYPTION_KEYS is missing or malformed")
        return {"ok": False, "status": "failing", "wrong_keys": True, "undecryptable": []}
    if sample.undecryptable:
        logger.warning("health check: no key decrypts %s", ", ".join(sample.undecryptable))
    return {
        "ok": not sample.undecryptable,
        "status": "failing" if sample.undecryptable else "ok",
        "wrong_keys": sample.nothing_decrypts,
        "undecryptable": sample.undecryptable,
    }
