"""Talking to local servers: a free port of 127.0.0.1, and one HTTP request to one."""

import http.client
import json
import socket


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (free when asked; a server takes it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 30):
    """One HTTP request to 127.0.0.1:port: (status, headers, parsed JSON or raw bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()
