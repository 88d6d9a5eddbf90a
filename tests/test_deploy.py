"""The production setup's pieces that need no server: gunicorn's response writer
(config/gunicorn_response.py) and deploy/serve.py's choices for nginx's configuration."""

import inspect
import os
import re
import resource

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from config.gunicorn_response import WholeResponse, install
from deploy.serve import (
    FILES_PER_CONNECTION,
    WORKER_CONNECTIONS,
    host_django_accepts,
    nginx_config,
    nginx_connection_limits,
)


class FakeSocket:
    def __init__(self):
        self.writes = []

    def sendall(self, data):
        self.writes.append(bytes(data))


class FakeRequest:
    version = (1, 1)
    method = "GET"
    headers = []

    def should_close(self):
        return False


def respond(chunks, headers=(("Content-Type", "application/json"),), method="GET"):
    sock = FakeSocket()
    request = FakeRequest()
    request.method = method
    response = WholeResponse(request, sock, Config())
    response.start_response("201 Created", list(headers))
    for chunk in chunks:
        response.write(chunk)
    response.close()
    return sock.writes


def test_head_and_body_leave_in_one_write():
    writes = respond([b'{"id": 1}'], headers=[("Content-Type", "application/json"), ("Content-Length", "9")])
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 201 Created\r\n") and writes[0].endswith(b'\r\n\r\n{"id": 1}')


def test_an_empty_first_chunk_sends_nothing_yet():
    """The fault of tests/fault_urls.py: a worker killed after an empty first chunk has sent
    no byte, so nginx answers its JSON 502 instead of forwarding a head without its body."""
    sock = FakeSocket()
    response = WholeResponse(FakeRequest(), sock, Config())
    response.start_response("201 Created", [("Content-Length", "2")])
    response.write(b"")
    assert sock.writes == []
    response.write(b"{}")
    assert len(sock.writes) == 1 and sock.writes[0].endswith(b"\r\n\r\n{}")


def test_a_response_without_body_still_sends_its_head():
    writes = respond([], headers=[("Content-Length", "0")])
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 201 Created\r\n")


def test_chunked_bodies_keep_their_framing():
    writes = respond([b"ab", b"", b"cde"])  # no Content-Length: chunked
    joined = b"".join(writes)
    assert joined.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    assert len(writes) == 3  # head with the first chunk, the second, the end


def test_install_reaches_every_request_gunicorn_builds():
    """gunicorn's workers build each HTTP/1 response through wsgi.create, which looks the
    class up in its module when called: what install() replaces. Fails if a gunicorn upgrade
    changes that (tests/test_production.py proves the effect through nginx)."""
    assert "response_class = Response" in inspect.getsource(wsgi.create)
    original = wsgi.Response
    try:
        install()
        assert wsgi.Response is WholeResponse
    finally:
        wsgi.Response = original


@pytest.mark.parametrize(
    ("uid", "hard", "connections", "file_limit", "warns"),
    [
        (1000, 1024, 512, 1024, True),  # a common ulimit -n 1024, hard too
        (1000, 4096, 2048, 4096, True),
        (1000, 8192, WORKER_CONNECTIONS, WORKER_CONNECTIONS * FILES_PER_CONNECTION, False),
        (1000, resource.RLIM_INFINITY, WORKER_CONNECTIONS, WORKER_CONNECTIONS * FILES_PER_CONNECTION, False),
        (0, 1024, WORKER_CONNECTIONS, WORKER_CONNECTIONS * FILES_PER_CONNECTION, False),  # root raises it
    ],
)
def test_nginx_gets_the_open_files_its_connections_need(uid, hard, connections, file_limit, warns):
    got_connections, got_file_limit, warning = nginx_connection_limits(uid, hard)
    assert (got_connections, got_file_limit) == (connections, file_limit)
    assert got_file_limit >= got_connections * FILES_PER_CONNECTION or got_file_limit == hard
    if warns:
        assert f"is {hard}: nginx serves at most {connections} connections" in warning
    else:
        assert warning is None


def test_the_rendered_configuration_sets_the_file_limit_with_the_connections(tmp_path):
    text = nginx_config(str(tmp_path), "127.0.0.1:1", "127.0.0.1:2")
    connections, file_limit, _ = nginx_connection_limits(
        os.getuid(), resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    )
    assert f"worker_rlimit_nofile {file_limit};" in text
    assert f"worker_connections {connections};" in text
    assert not re.search(r"@[A-Z_]+@", text.split("\n", 3)[3])  # every placeholder filled


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["127.0.0.1", "localhost"], "127.0.0.1"),
        ([".example.com"], "example.com"),
        (["*"], "localhost"),
        (["", "[::1]"], "[::1]"),
    ],
)
def test_nginx_asks_django_with_a_host_it_allows(allowed, host):
    assert host_django_accepts(allowed) == host
