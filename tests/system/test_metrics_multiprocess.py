"""/metrics under gunicorn with four worker processes (prometheus_client's multiprocess
mode, config/gunicorn.conf.py): after a known load, a scrape over HTTP, whichever worker
answers it, finds exactly the counts of all of them, and still does after a worker is
killed and replaced. What other processes (the worker, the commands) count in the same
folder: tests/system/test_metrics_every_process.py."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.net import request
from devtools.servers import Gunicorn, create_user_with_token, manage, service_env
from executions import metrics

pytestmark = pytest.mark.slow

TOKEN = "multiprocess-metrics-test-token-0123456789"
WORKERS = 4
EXECUTIONS = 12
HEARTBEATS_EACH = 2
CANCELLED = 6


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics")
    env = service_env(
        f"sqlite:///{folder / 'db.sqlite3'}",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(folder / "prometheus"),
        # The production gunicorn settings: the multiprocess folder and the hooks.
        GUNICORN_CMD_ARGS="--config config/gunicorn.conf.py",
    )
    manage(env, "migrate", "--no-input")
    api_token = create_user_with_token(env, "worker")
    with Gunicorn(env, workers=WORKERS, threads=2) as gunicorn:
        yield gunicorn, api_token, folder / "prometheus"


def scrape(port) -> dict:
    status, headers, body = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def send_known_load(port, api_token) -> None:
    auth = {"Authorization": f"Token {api_token}"}
    ids = []
    for index in range(EXECUTIONS):
        status, _, body = request(port, "POST", "/api/v1/executions", {"name": f"job-{index}"}, auth)
        assert status == 201, body
        ids.append(body["id"])
    # Concurrently, so that every worker process takes a share.
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(
            lambda execution_id: request(
                port, "POST", f"/api/v1/executions/{execution_id}/heartbeat", None, auth
            ),
            ids * HEARTBEATS_EACH,
        )
        assert [answer[0] for answer in answers] == [200] * EXECUTIONS * HEARTBEATS_EACH
    for execution_id in ids[:CANCELLED]:
        status, _, body = request(
            port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": "cancelled"}, auth
        )
        assert status == 200 and body["success"] is True, body
    # Refused: the same status again (3), an invalid transition (2), an unknown execution (1).
    for execution_id in ids[:3]:
        assert (
            request(port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": "cancelled"}, auth)[0]
            == 200
        )
    for execution_id in ids[:2]:
        assert (
            request(port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": "completed"}, auth)[0]
            == 400
        )
    unknown = "/api/v1/executions/8a0f3c1e-0000-4000-8000-000000000000"
    assert request(port, "PATCH", unknown, {"status": "failed"}, auth)[0] == 404


def assert_exact_counts(samples) -> None:
    assert (
        value(
            samples,
            "executions_status_changes_total",
            previous_status="running",
            new_status="cancelled",
            channel="api",
        )
        == CANCELLED
    )
    refused = "executions_status_changes_refused_total"
    assert value(samples, refused, reason=metrics.REFUSED_SAME_STATUS, channel="api") == 3
    assert value(samples, refused, reason=metrics.REFUSED_INVALID_TRANSITION, channel="api") == 2
    assert value(samples, refused, reason=metrics.REFUSED_NOT_FOUND, channel="api") == 1
    assert value(samples, "executions_heartbeats_total", result="accepted") == EXECUTIONS * HEARTBEATS_EACH
    requests = "executions_http_request_duration_seconds_count"
    assert value(samples, requests, route="execution-list", method="POST", status="201") == EXECUTIONS
    assert value(samples, requests, route="execution-heartbeat", method="POST", status="200") == (
        EXECUTIONS * HEARTBEATS_EACH
    )
    assert value(samples, requests, route="execution-detail", method="PATCH", status="200") == CANCELLED + 3
    assert value(samples, "executions_running") == EXECUTIONS - CANCELLED
    assert value(samples, "executions_stale") == 0


def test_a_scrape_adds_up_every_worker_and_survives_a_worker_restart(service):
    gunicorn, api_token, values_folder = service
    assert request(gunicorn.port, "GET", "/metrics")[0] == 401

    send_known_load(gunicorn.port, api_token)
    # The load was spread over several processes: each wrote a values file of its own.
    writers = {path.stem.rsplit("_", 1)[1] for path in values_folder.glob("counter_*.db")}
    assert len(writers) >= 2, writers
    for _ in range(3):  # whichever worker answers
        assert_exact_counts(scrape(gunicorn.port))

    # A worker dies and gunicorn replaces it: what it counted stays counted.
    victim = gunicorn.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (
        victim in gunicorn.worker_pids() or len(gunicorn.worker_pids()) < WORKERS
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert victim not in gunicorn.worker_pids()
    assert_exact_counts(scrape(gunicorn.port))


def test_a_new_server_on_the_same_folder_keeps_what_the_last_one_counted(service, tmp_path):
    """Nothing is wiped when a server starts (the worker and the commands count in the same
    folder: executions/metrics_files.py): a copy of the folder, taken while the first server
    runs, read by a second server, gives the same counts; a new folder starts from zero."""
    _, _, values_folder = service
    copied = Path(tmp_path / "prometheus")
    copied.mkdir()
    for path in values_folder.glob("*.db"):
        (copied / path.name).write_bytes(path.read_bytes())
    database = f"sqlite:///{values_folder.parent / 'db.sqlite3'}"
    config = "--config config/gunicorn.conf.py"
    env = service_env(
        database, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(copied), GUNICORN_CMD_ARGS=config
    )
    with Gunicorn(env, workers=1, threads=1) as gunicorn:
        assert_exact_counts(scrape(gunicorn.port))

    fresh = service_env(
        database,
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "fresh"),
        GUNICORN_CMD_ARGS=config,
    )
    with Gunicorn(fresh, workers=1, threads=1) as gunicorn:
        samples = scrape(gunicorn.port)
    assert value(samples, "executions_heartbeats_total", result="accepted") == 0
    assert value(samples, "executions_running") == EXECUTIONS - CANCELLED  # from the database
