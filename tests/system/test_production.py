"""The production setup as it is deployed: deploy/serve.py (what scripts/serve-production.sh
runs after migrating) starts nginx in front of gunicorn; these tests talk to it over TCP.

Its own database: a SQLite file here, a database of its own on the PostgreSQL server of the
PostgreSQL pass (DATABASE_URL). nginx's timeouts are shortened to 3 s so that the slow
clients' connections are closed within the test.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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
    """Send bytes as they are; the answer's status, headers (lower-case names) and body.
    Reads no further than Content-Length: nginx may reset a connection after its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in header_lines)
        headers = {name.lower(): value.strip() for name, _, value in fields}
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def assert_error_json(status: int, headers: dict, body: bytes, expected_status: int, error_code: str) -> dict:
    assert status == expected_status, body[:300]
    assert headers["content-type"] == "application/json", body[:300]
    assert set(json.loads(body)) == ERROR_RESPONSE_KEYS, body
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
            "TRACE, which nginx refuses",
            b"TRACE /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
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
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        gunicorn_pid = next(
            int(pid) for pid in children if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
        os.kill(gunicorn_pid, signal.SIGKILL)
        assert server.process.wait(timeout=60) == 1
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
