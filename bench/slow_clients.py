"""Slow clients against gunicorn alone and against the production setup (nginx in front).

For each server: N connections send a request's headers one byte per second (or complete
headers declaring a 100 KB body, then the body one byte per second) while one client sends
GET /healthz and an authenticated PATCH in turn for --seconds; prints the slowest answer of
each, and how many slow connections the server closed, and after how long.

    python bench/slow_clients.py                       # SQLite, 64 slow clients, 20 s each
    python bench/slow_clients.py --clients 16 --seconds 30

gunicorn alone is what devtools/servers.py starts (2 workers x 4 threads, gthread); the
production setup is deploy/serve.py with its defaults (nginx's timeouts 10 s).
"""

import harness  # first: it puts the repo root on sys.path

from devtools.net import request
from devtools.servers import Gunicorn, ProductionServer, create_user_with_token
from devtools.slow_clients import SlowClients, slowest_answers


def scenarios(port: int, token: str, execution_id: str) -> dict[str, tuple[bytes, bytes]]:
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    body_length = 100 * 1024
    return {
        "headers at 1 byte/s": (b"", b"GET /healthz HTTP/1.1\r\n" + host + b"X-Slow: " + b"a" * 4000),
        "100 KB body at 1 byte/s": (
            f"PATCH /api/v1/executions/{execution_id} HTTP/1.1\r\n".encode()
            + host
            + f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_length}\r\n\r\n".encode(),
            b" " * body_length,
        ),
    }


def measure(name: str, port: int, token: str, args) -> None:
    auth = {"Authorization": f"Token {token}"}
    status, _, created = request(
        port, "POST", "/api/v1/executions", body={"name": "slow-bench"}, headers=auth
    )
    assert status == 201, (status, created)
    probes = [
        ("GET /healthz", "GET", "/healthz", None, None),
        ("PATCH", "PATCH", f"/api/v1/executions/{created['id']}", {"status": "cancelled"}, auth),
    ]
    for scenario, (head, trickle) in scenarios(port, token, created["id"]).items():
        slow = SlowClients(port, args.clients, head, trickle)
        try:
            slowest = slowest_answers(port, args.seconds, probes)
        finally:
            still_open = slow.still_open()
            closed = sorted(after for after in slow.closed_after if after is not None)
            slow.close()
        print(f"{name}, {args.clients} slow clients, {scenario}:")
        for probe, (worst, statuses) in slowest.items():
            unanswered = statuses.count(None)
            print(
                f"  {probe:14} slowest {worst:6.2f} s over {len(statuses)} requests, {unanswered} unanswered"
            )
        closed_text = f"closed after {closed[0]:.1f} to {closed[-1]:.1f} s" if closed else "none closed"
        print(f"  slow connections: {closed_text}; {still_open} still open after {args.seconds} s")


def main():
    args = harness.parse_options(__doc__, clients=64, seconds=20)

    with harness.bench_database() as (database_url, folder):
        env = harness.service_env(database_url)
        token = create_user_with_token(env, "bench")
        with Gunicorn(env, workers=2, threads=4, log_path=str(folder / "gunicorn.log")) as server:
            measure("gunicorn alone (2 workers x 4 threads)", server.port, token, args)
        with ProductionServer(env, log_path=str(folder / "serve.log")) as server:
            measure("production setup (nginx, gunicorn)", server.port, token, args)


if __name__ == "__main__":
    main()
