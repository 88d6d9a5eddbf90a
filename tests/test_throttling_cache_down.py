"""With the throttle's cache (Redis) unreachable, the API answers as usual (fail open), warns
once, and counts each request let through unchecked. The same against a real Redis stopped
under four worker processes: tests/system/test_throttling_redis.py."""

import logging

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY

from devtools.net import free_port
from executions.api import throttling


def cache_errors() -> float:
    return REGISTRY.get_sample_value("executions_throttle_cache_errors_total") or 0.0


@pytest.fixture
def unreachable_redis(monkeypatch):
    monkeypatch.setattr(throttling, "_last_cache_down_warning", 0.0)
    cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
    rates = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "1/min", "anon": "1/min"}}
    with override_settings(CACHES={"default": cache}, REST_FRAMEWORK=rates):
        yield


def test_requests_go_through_warned_once_and_counted(owner_client, unreachable_redis, caplog):
    before = cache_errors()
    with caplog.at_level(logging.WARNING, logger="executions.api.throttling"):
        answers = [owner_client.get("/api/v1/executions").status_code for _ in range(3)]
    assert answers == [200, 200, 200]  # the rate is 1/min: with a working cache, two 429s
    warnings = [r.getMessage() for r in caplog.records if r.name == "executions.api.throttling"]
    assert len(warnings) == 1
    assert warnings[0].startswith("Rate limits not applied: the cache (CACHE_URL) does not answer")
    assert cache_errors() - before == 3


def test_a_request_without_a_token_is_still_a_401_not_a_500(client, db, unreachable_redis):
    response = client.get("/api/v1/executions")
    assert response.status_code == 401
