"""When to refresh and how long to back off: pure functions of time and settings."""

from datetime import UTC, datetime, timedelta

from tokens.planning import plan_next_refresh, retry_delay

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_webex_token_refreshes_after_three_quarters_of_its_life_minus_jitter():
    planned = plan_next_refresh(obtained_at=T0, access_expires_at=T0 + timedelta(days=14))
    three_quarters = T0 + timedelta(days=10, hours=12)
    assert three_quarters - timedelta(days=14) * 0.02 <= planned <= three_quarters


def test_margin_caps_refresh_at_fifteen_minutes_before_expiry(settings):
    settings.TOKEN_CONSOLE = {"REFRESH_AT_FRACTION": 0.99, "REFRESH_JITTER_FRACTION": 0}
    planned = plan_next_refresh(obtained_at=T0, access_expires_at=T0 + timedelta(hours=2))
    assert planned == T0 + timedelta(hours=1, minutes=45)


def test_short_lived_token_is_not_refreshed_at_once():
    planned = plan_next_refresh(obtained_at=T0, access_expires_at=T0 + timedelta(minutes=10))
    assert T0 + timedelta(minutes=7) <= planned <= T0 + timedelta(minutes=7, seconds=30)


def test_keepalive_refreshes_long_lived_tokens_within_the_keepalive_days(settings):
    settings.TOKEN_CONSOLE = {"REFRESH_TOKEN_KEEPALIVE_DAYS": 30}
    planned = plan_next_refresh(obtained_at=T0, access_expires_at=T0 + timedelta(days=365))
    assert planned <= T0 + timedelta(days=30)


def test_jitter_spreads_orgs_connected_together():
    plans = {
        plan_next_refresh(obtained_at=T0, access_expires_at=T0 + timedelta(days=14))
        for _ in range(50)
    }
    assert len(plans) > 40


def test_backoff_grows_exponentially_and_is_capped(settings):
    settings.TOKEN_CONSOLE = {"RETRY_BASE_DELAY": 30, "RETRY_MAX_DELAY": 600}
    for failures, ceiling in [(1, 30), (2, 60), (3, 120), (4, 240), (10, 600)]:
        delay = retry_delay(failures=failures, retry_after=None).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def test_longer_retry_after_wins_over_backoff():
    assert retry_delay(failures=1, retry_after=900) == timedelta(seconds=900)


def test_a_retry_after_longer_than_retry_after_max_waits_the_max(settings):
    settings.TOKEN_CONSOLE = {"RETRY_AFTER_MAX": 3600}
    assert retry_delay(failures=1, retry_after=1e14) == timedelta(hours=1)
    assert retry_delay(failures=1, retry_after=float("inf")) == timedelta(hours=1)
