"""Rate limits shared by every worker process (and host) through a real Redis
(CACHE_URL=redis://...): four gunicorn workers let a user have N requests per minute, not 4N;
with Redis down, requests go through (fail open) and are counted in /metrics; with Redis back,
limits hold again."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.net import request
from devtools.servers import (
    Gunicorn,
    RedisServer,
    create_user_with_token,
    manage,
    redis_server_binary,
    service_env,
)

pytestmark = pytest.mark.slow

RATE = 10
SENT = 40
METRICS_TOKEN = "throttling-redis-test-metrics-token"


@pytest.fixture(scope="module")
def redis_server():
    if redis_server_binary() is None:
        reason = "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Under CI=true the Redis tests must run, but {reason}")
        pytest.skip(reason)
    server = RedisServer()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    folder = tmp_path_factory.mktemp("throttling")
    url = f"sqlite:///{folder / 'db.sqlite3'}"
    manage(service_env(url), "migrate", "--no-input")
    return url, folder


def service_with_cache(database, cache_url: str, **extra) -> Gunicorn:
    url, folder = database
    env = service_env(
        url,
        CACHE_URL=cache_url,
        API_THROTTLE_USER=f"{RATE}/min",
        METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(folder / f"prometheus-{len(os.listdir(folder))}"),
        GUNICORN_CMD_ARGS="--config config/gunicorn.conf.py",
    )
    return Gunicorn(env, **extra)


@pytest.fixture(scope="module")
def service(database, redis_server):
    with service_with_cache(database, redis_server.url, workers=4, threads=2) as gunicorn:
        yield gunicorn


def new_user(database, username) -> str:
    return create_user_with_token(service_env(database[0]), username)


def send_at_once(port, token, count=SENT) -> list[tuple[int, dict]]:
    def one(_):
        status, headers, _ = request(
            port, "GET", "/api/v1/executions", headers={"Authorization": f"Token {token}"}
        )
        return status, headers

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def statuses(answers) -> dict[int, int]:
    return {status: sum(1 for s, _ in answers if s == status) for status in {s for s, _ in answers}}


def throttle_cache_errors(port) -> float:
    status, _, body = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "executions_throttle_cache_errors_total":
                return sample.value
    return 0.0


def test_four_worker_processes_share_one_count_n_per_minute_not_4n(service, database):
    token = new_user(database, "alice")
    answers = send_at_once(service.port, token)
    assert statuses(answers) == {200: RATE, 429: SENT - RATE}
    assert all(1 <= int(headers["Retry-After"]) <= 60 for status, headers in answers if status == 429)
    # Another user has a count of their own.
    assert statuses(send_at_once(service.port, new_user(database, "bob"), count=RATE)) == {200: RATE}


def test_with_redis_down_requests_go_through_and_limits_hold_again_once_it_is_back(
    service, database, redis_server
):
    token = new_user(database, "carol")
    errors_before = throttle_cache_errors(service.port)
    redis_server.stop()
    try:
        answers = send_at_once(service.port, token, count=15)
    finally:
        redis_server.start()  # empty: counting starts again from zero
    assert statuses(answers) == {200: 15}  # fail open: no 429, no 500
    assert throttle_cache_errors(service.port) - errors_before == 15

    assert statuses(send_at_once(service.port, token)) == {200: RATE, 429: SENT - RATE}


def test_without_a_shared_cache_each_process_counts_alone(database):
    """What the Redis setting is for: with the per-process default cache, four workers let
    one user through more than the rate (each process counts alone)."""
    token = new_user(database, "dave")
    with service_with_cache(
        database, "locmemcache://", workers=4, threads=1, worker_class="sync"
    ) as gunicorn:
        allowed = statuses(send_at_once(gunicorn.port, token)).get(200, 0)
    assert allowed > RATE
