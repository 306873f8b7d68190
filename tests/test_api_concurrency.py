"""On-demand refresh through the API on a real database: many callers, one provider call."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client

from tests.conftest import connect_org
from tokens import services
from tokens.models import Token, TokenEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_calls_for_an_expiring_org_share_one_refresh(real_time_clock, org, provider):
    connect_org(org, provider)
    _, key = services.api_client_create(name="flows", orgs=[org])
    provider.rotate_refresh_tokens = provider.reuse_detection = True
    before = Token.objects.get(org=org)
    real_time_clock.current = before.access_expires_at - timedelta(minutes=2)
    provider.reset_records()
    provider.latency = 0.3  # keep the refresh in flight while the other callers arrive
    callers = 16
    barrier = threading.Barrier(callers)
    answers: list[tuple[int, str]] = []

    def call() -> None:
        try:
            barrier.wait()
            response = Client().get(
                f"/api/v1/orgs/{org.slug}/token", HTTP_AUTHORIZATION=f"Bearer {key}"
            )
            answers.append((response.status_code, response.json().get("access_token", "")))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    after = Token.objects.get(org=org)
    assert provider.refresh_call_count() == 1
    assert after.version == before.version + 1
    assert answers == [(200, after.access_token)] * callers
    assert TokenEvent.objects.filter(org=org, kind="refreshed", trigger="api").count() == 1
