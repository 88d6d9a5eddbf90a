"""The production setup as it is deployed: deploy/serve.py (what scripts/serve-production.sh
runs after migrating) starts nginx in front of gunicorn; these tests talk to it over TCP.

Its own database: a SQLite file here, a database of its own on the PostgreSQL server of the
PostgreSQL pass (DATABASE_URL). nginx's timeouts are shortened to 3 s so that the slow
clients' connections are closed within the test.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import jsonschema
import psycopg
import pytest

from deploy.serve import start_nginx, write_nginx_config
from devtools.net import free_port, request
from devtools.servers import ProductionServer, create_user_with_token, manage, service_env
from devtools.slow_clients import SlowClients, slowest_answers
from executions.api.error_codes import ErrorCode
from executions.api.schemas import ErrorResponse

from ..api import ERROR_RESPONSE_KEYS

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 64
CLIENT_TIMEOUT_SECONDS = 3
# How long the slow clients hold their connections while ordinary requests are measured.
WINDOW_SECONDS = 5
# The bound on how long slow clients may delay an ordinary request.
AVAILABILITY_BOUND_SECONDS = 1.0
BODY_LIMIT = 256 * 1024
METRICS_TOKEN = "production-metrics-token-0123456789"
CONTRACT = json.loads((Path(__file__).parent.parent / "fixtures/contract/reference-openapi.json").read_text())
# The contract's ErrorResponse, and its timestamps as Django writes them (pydantic: UTC, Z).
CONTRACT_ERROR_RESPONSE = CONTRACT["components"]["schemas"]["ErrorResponse"]
DJANGO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


@pytest.fixture(scope="module")
def database_url():
    given = os.environ.get("DATABASE_URL", "")
    if given.startswith("postgres"):
        name = f"production_{os.getpid()}"
        admin_url = given.replace("postgres://", "postgresql://", 1)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        yield given.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        folder = tempfile.mkdtemp(prefix="executions-production-")
        yield f"sqlite:///{folder}/production.sqlite3"
        shutil.rmtree(folder, ignore_errors=True)


def require_nginx():
    if shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed; under CI=true that is a failure (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")


@pytest.fixture(scope="module")
def production(database_url):
    """The production setup, migrated, with 2 gunicorn workers x 2 threads; its token."""
    require_nginx()
    env = service_env(
        database_url,
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
        NGINX_CLIENT_HEADER_TIMEOUT=f"{CLIENT_TIMEOUT_SECONDS}s",
        NGINX_CLIENT_BODY_TIMEOUT=f"{CLIENT_TIMEOUT_SECONDS}s",
        DATA_UPLOAD_MAX_MEMORY_SIZE=str(BODY_LIMIT),
        METRICS_TOKEN=METRICS_TOKEN,
    )
    manage(env, "migrate", "--no-input")
    token = create_user_with_token(env, "worker")
    with ProductionServer(env) as server:
        yield server, token


def create_execution(port: int, token: str) -> str:
    status, _, body = request(
        port,
        "POST",
        "/api/v1/executions",
        body={"name": "production"},
        headers={"Authorization": f"Token {token}"},
    )
    assert status == 201, body
    return body["id"]


def raw_request(port: int, data: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are; the answer's status, headers (lower-case names; the status
    line's reason phrase as ":reason") and body. Reads no further than Content-Length: nginx
    may reset a connection after its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in header_lines)
        headers = {name.lower(): value.strip() for name, _, value in fields}
        headers[":reason"] = status_line.split(" ", 2)[2] if status_line.count(" ") >= 2 else ""
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            if not chunk:
                break  # closed before Content-Length: the caller sees a truncated body
            body += chunk
    return int(status_line.split()[1]), headers, body


def assert_error_json(status: int, headers: dict, body: bytes, expected_status: int, error_code: str) -> dict:
    """One shape whoever answers, nginx or Django: JSON in the contract's ErrorResponse, its
    timestamp as Django writes it, and a status line with a reason phrase."""
    assert status == expected_status, body[:300]
    assert headers["content-type"] == "application/json", body[:300]
    assert headers[":reason"].strip(), headers
    assert set(json.loads(body)) == ERROR_RESPONSE_KEYS, body
    jsonschema.validate(json.loads(body), CONTRACT_ERROR_RESPONSE, format_checker=jsonschema.FormatChecker())
    assert DJANGO_TIMESTAMP.fullmatch(json.loads(body)["timestamp"]), body
    parsed = ErrorResponse.model_validate_json(body)
    assert parsed.error_code == error_code
    assert parsed.correlation_id == headers["x-request-id"]
    return parsed


def measure_during(server, token: str, slow: SlowClients) -> dict:
    execution_id = create_execution(server.port, token)
    probes = [
        ("healthz", "GET", "/healthz", None, None),
        (
            "patch",
            "PATCH",
            f"/api/v1/executions/{execution_id}",
            {"status": "cancelled"},
            {"Authorization": f"Token {token}"},
        ),
    ]
    try:
        return slowest_answers(server.port, WINDOW_SECONDS, probes)
    finally:
        slow.close()


def test_slow_headers_delay_nobody_and_are_closed(production):
    """64 connections send a request's headers at 1 byte/s: /healthz and a PATCH keep
    answering 200 within a second, and nginx closes every slow connection once its header
    timeout has passed (the whole header must arrive within it)."""
    server, token = production
    trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    slow = SlowClients(server.port, SLOW_CLIENTS, b"", trickle)
    slowest = measure_during(server, token, slow)

    for probe in ("healthz", "patch"):
        worst, statuses = slowest[probe]
        assert set(statuses) == {200}, (probe, statuses)
        assert worst < AVAILABILITY_BOUND_SECONDS, (probe, worst)
    # Each was closed within the window, so within the header timeout and a little more.
    assert None not in slow.closed_after, slow.closed_after


def test_slow_bodies_delay_nobody_and_stalled_ones_are_closed(production):
    """64 connections declare a 100 KB body and send it at 1 byte/s: nginx buffers them, so
    gunicorn never waits for one, and /healthz and a PATCH keep answering within a second.
    Connections whose body stops arriving are closed after nginx's body timeout."""
    server, token = production
    execution_id = create_execution(server.port, token)
    head = (
        f"PATCH /api/v1/executions/{execution_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024}\r\n\r\n"
    ).encode()
    slow = SlowClients(server.port, SLOW_CLIENTS, head, b" " * 100)
    stalled = SlowClients(server.port, 8, head + b"{", b"")
    try:
        slowest = measure_during(server, token, slow)
    finally:
        stalled.close()

    for probe in ("healthz", "patch"):
        worst, statuses = slowest[probe]
        assert set(statuses) == {200}, (probe, statuses)
        assert worst < AVAILABILITY_BOUND_SECONDS, (probe, worst)
    assert None not in stalled.closed_after, stalled.closed_after
    # The trickled PATCH never completed: the execution is still running.
    status, _, body = request(
        server.port, "GET", f"/api/v1/executions/{execution_id}", headers={"Authorization": f"Token {token}"}
    )
    assert (status, body["status"]) == (200, "running")


def test_an_8_kb_request_line_reaches_django(production):
    """A PATCH on an id of 8000 characters is the contract's 404, from Django."""
    server, token = production
    status, headers, body = request(
        server.port,
        "PATCH",
        "/api/v1/executions/" + "a" * 8000,
        body={"status": "cancelled"},
        headers={"Authorization": f"Token {token}"},
    )
    assert status == 404, body
    assert headers["Content-Type"] == "application/json"
    assert body["error_code"] == ErrorCode.EXECUTION_NOT_FOUND
    assert body["correlation_id"] == headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("name", "data", "expected_status", "error_code"),
    [
        (
            "request line over 8 KB",
            b"GET /api/v1/executions/" + b"a" * 8200 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            ErrorCode.URI_TOO_LONG,
        ),
        (
            "a header over 8 KB",
            b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            ErrorCode.HEADERS_TOO_LARGE,
        ),
        (
            "headers over 32 KB in all",
            b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-%d: %s\r\n" % (n, b"a" * 7000) for n in range(6))
            + b"\r\n",
            431,
            ErrorCode.HEADERS_TOO_LARGE,
        ),
        ("not HTTP at all", b"GARBAGE\r\n\r\n", 400, ErrorCode.BAD_REQUEST),
        (
            # nginx refuses TRACE and hands it to Django, which answers it as any method it
            # does not take: no token yet.
            "TRACE",
            b"TRACE /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            401,
            ErrorCode.NOT_AUTHENTICATED,
        ),
        (
            # Django's answer (gunicorn alone would refuse the method in HTML): no token yet.
            "a 100-letter method",
            b"X" * 100 + b" /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            401,
            ErrorCode.NOT_AUTHENTICATED,
        ),
        (
            "NUL in the path",
            b"GET /api/v1/executions/\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        ("HTTP/1.1 without Host", b"GET /api/v1/executions HTTP/1.1\r\n\r\n", 400, ErrorCode.BAD_REQUEST),
        (
            "a space in a header name",
            b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "a folded header",
            b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n c\r\n\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "a Content-Length that is not a number",
            b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "a broken chunked body",
            b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "Content-Length and Transfer-Encoding both",
            b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "a transfer coding nginx does not know",
            b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "an HTTP version nginx does not speak",
            b"GET /api/v1/executions HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
            505,
            ErrorCode.BAD_REQUEST,
        ),
        (
            "a body declared over the limit",
            b"PATCH /api/v1/executions/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n".encode(),
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
        ),
        (
            "a chunked body over the limit",
            b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % (BODY_LIMIT + 1)
            + b" " * (BODY_LIMIT + 1)
            + b"\r\n0\r\n\r\n",
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
        ),
    ],
)
def test_what_nginx_refuses_is_error_response_json(production, name, data, expected_status, error_code):
    server, _ = production
    assert_error_json(*raw_request(server.port, data), expected_status, error_code)


def test_trace_is_refused_with_the_methods_of_its_path_in_allow(production):
    """nginx refuses TRACE; the 405 (Django's) names what the path takes (RFC 9110)."""
    server, token = production
    for path, allowed in [
        ("/api/v1/executions", "GET, POST, HEAD, OPTIONS"),
        ("/api/v1/executions/x", "GET, PATCH, HEAD, OPTIONS"),
        ("/api/v1/status-changes", "GET, HEAD, OPTIONS"),
    ]:
        status, headers, body = raw_request(
            server.port,
            f"TRACE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n\r\n".encode(),
        )
        assert_error_json(status, headers, body, 405, ErrorCode.METHOD_NOT_ALLOWED)
        assert headers["allow"] == allowed


@pytest.mark.parametrize("line_length", [8180, 8187, 8188, 8189, 8190, 8191, 8192, 8200])
@pytest.mark.parametrize("header", ["X-Big", "X-Forwarded-For"])
def test_a_header_line_near_8_kb_is_answered_in_json(production, header, line_length):
    """A header line that passes nginx also passes gunicorn (which answered 8,189-8,190 bytes
    with its HTML 431); one nginx refuses is its JSON 431. X-Forwarded-For grows on its way
    to gunicorn (nginx appends the client's address)."""
    server, _ = production
    value = ("1" * (line_length - len(header) - 2)).encode()
    status, headers, body = raw_request(
        server.port,
        b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: %s\r\n\r\n" % (header.encode(), value),
    )
    if status == 431:
        assert_error_json(status, headers, body, 431, ErrorCode.HEADERS_TOO_LARGE)
    else:  # Django's answer: no token
        assert_error_json(status, headers, body, 401, ErrorCode.NOT_AUTHENTICATED)


def test_a_body_of_exactly_the_limit_reaches_django(production):
    """nginx's limit is the service's: the largest body Django takes passes nginx (and is
    then Django's to judge: here a 422, the body being spaces, not JSON)."""
    server, token = production
    status, headers, body = request(
        server.port,
        "POST",
        "/api/v1/executions",
        body=b" " * BODY_LIMIT,
        headers={"Authorization": f"Token {token}"},
    )
    assert status == 422, body
    assert body["detail"][0]["type"] == "json_invalid"


def test_the_client_request_id_is_the_correlation_id_of_nginx_answers(production):
    """Where nginx read the headers, a plain X-Request-ID is taken, as Django takes it."""
    server, _ = production
    status, headers, body = raw_request(
        server.port,
        b"POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: abc-123\r\n"
        + f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n".encode(),
    )
    error = assert_error_json(status, headers, body, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert error.correlation_id == "abc-123"


def test_a_request_id_that_could_break_the_json_is_replaced(production):
    server, _ = production
    status, headers, body = raw_request(
        server.port,
        b'POST /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: a", "x": "\\\r\n'
        + f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n".encode(),
    )
    correlation_id = assert_error_json(status, headers, body, 413, ErrorCode.PAYLOAD_TOO_LARGE).correlation_id
    assert '"' not in correlation_id and len(correlation_id) == 32


def test_two_instances_run_side_by_side(production, database_url):
    """A second instance on the same host (its own port, nginx files, gunicorn control
    socket) starts and serves while the first one keeps serving."""
    server, _ = production
    with ProductionServer(service_env(database_url, WEB_CONCURRENCY="1", GUNICORN_THREADS="1")) as second:
        assert request(second.port, "GET", "/healthz")[0] == 200
        assert request(server.port, "GET", "/healthz")[0] == 200


def test_when_gunicorn_dies_the_whole_server_stops_with_an_error(database_url):
    """deploy/serve.py stops nginx too and exits 1, so that systemd or Kubernetes restarts
    the whole instead of leaving nginx answering 502 forever."""
    with ProductionServer(service_env(database_url, WEB_CONCURRENCY="1", GUNICORN_THREADS="1")) as server:
        os.kill(child_pid(server, b"gunicorn"), signal.SIGKILL)
        assert server.process.wait(timeout=60) == 1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5)


def child_pid(server, name: bytes) -> int:
    """The pid of deploy/serve.py's child whose command line holds `name`."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return next(int(pid) for pid in children if name in Path(f"/proc/{pid}/cmdline").read_bytes())


def test_the_worker_runs_beside_the_servers_and_its_counts_reach_metrics(production):
    """An execution with a max runtime of 1 s, created through nginx, is failed by the
    worker deploy/serve.py runs; the web's /metrics counts what the worker did."""
    server, token = production
    auth = {"Authorization": f"Token {token}"}
    status, _, body = request(
        server.port, "POST", "/api/v1/executions", {"name": "bounded", "max_runtime_seconds": 1}, auth
    )
    assert status == 201, body
    deadline = time.monotonic() + 60
    while (answer := request(server.port, "GET", f"/api/v1/executions/{body['id']}", None, auth)[2])[
        "status"
    ] == "running":
        assert time.monotonic() < deadline, "the worker did not fail it"
        time.sleep(0.2)
    assert answer["status"] == "failed" and answer["error_info"]["reason"] == "deadline_exceeded"
    status, _, text = request(
        server.port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    assert 'executions_watch_transitions_total{reason="deadline_exceeded"} 1.0' in text.decode()


def test_when_the_worker_dies_the_whole_server_stops_with_an_error(database_url):
    """The same as for gunicorn: a worker that died is not left dead behind a serving API,
    nor restarted in a loop here; the system's supervisor restarts the whole."""
    with ProductionServer(service_env(database_url, WEB_CONCURRENCY="1", GUNICORN_THREADS="1")) as server:
        os.kill(child_pid(server, b"run_worker"), signal.SIGKILL)
        assert server.process.wait(timeout=60) == 1
        assert "the worker exited with status -9: stopping the others" in server.log()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5)


def test_gunicorn_down_is_a_json_502(tmp_path):
    """nginx with deploy/nginx.conf and nothing listening where gunicorn should be."""
    require_nginx()
    port = free_port()
    config_path = write_nginx_config(str(tmp_path), f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}")
    nginx = start_nginx(str(tmp_path), config_path, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, body = raw_request(
                    port, b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                )
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        assert_error_json(status, headers, body, 502, ErrorCode.SERVICE_UNAVAILABLE)
        assert headers["retry-after"] == "5"
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def test_a_worker_killed_mid_answer_gives_the_client_a_json_502(database_url):
    """The worker dies after it handed gunicorn the answer's status and headers, before the
    body (tests/fault_urls.py): gunicorn sends a head only with its body
    (config/gunicorn_response.py), so nginx has nothing yet and answers its JSON 502, not a
    truncated 201. The execution was committed before: the client retries with an
    Idempotency-Key to learn it."""
    require_nginx()
    env = service_env(
        database_url, WEB_CONCURRENCY="1", GUNICORN_THREADS="1", DJANGO_SETTINGS_MODULE="tests.fault_settings"
    )
    manage(env, "migrate", "--no-input")
    with ProductionServer(env) as server:
        status, headers, body = raw_request(
            server.port, b"GET /api/test-only/create-then-die HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert_error_json(status, headers, body, 502, ErrorCode.SERVICE_UNAVAILABLE)
        # gunicorn replaced the worker: the service answers again.
        deadline = time.monotonic() + 60
        while request(server.port, "GET", "/healthz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    count = manage(
        env,
        "shell",
        "-c",
        "from executions.models import Execution;"
        "print(Execution.objects.filter(name='created-then-killed').count())",
    )
    assert count.strip().splitlines()[-1] == "1"


def test_nginx_serves_past_a_low_open_file_limit(tmp_path):
    """Started under `ulimit -n 256` (the soft limit; the hard one allows more), nginx raises
    its workers' limit to worker_rlimit_nofile and keeps accepting: 1,000 idle connections,
    and a request after them is still answered (nginx's JSON 502 here: no gunicorn behind)."""
    require_nginx()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this test opens {needed} connections; the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    port = free_port()
    config_path = write_nginx_config(str(tmp_path), f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}")

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    nginx = start_nginx(str(tmp_path), config_path, stderr=subprocess.DEVNULL, preexec_fn=low_limit)
    idle = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        workers = Path(f"/proc/{nginx.pid}/task/{nginx.pid}/children").read_text().split()
        for worker in workers:
            limits = Path(f"/proc/{worker}/limits").read_text()
            soft_limit = next(
                line for line in limits.splitlines() if line.startswith("Max open files")
            ).split()[3]
            assert int(soft_limit) >= 2 * 4096 or int(soft_limit) == hard, limits
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        status, headers, body = raw_request(
            port, b"GET /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert_error_json(status, headers, body, 502, ErrorCode.SERVICE_UNAVAILABLE)
    finally:
        for connection in idle:
            connection.close()
        nginx.terminate()
        nginx.wait(timeout=30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
