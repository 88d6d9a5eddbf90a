"""A bounded soak: mixed load on gunicorn + PostgreSQL for a few minutes, counting every
answer and sampling the gunicorn workers' memory.

Starts a throwaway PostgreSQL server of its own (devtools/postgres.py; or uses DATABASE_URL
when it names a PostgreSQL database, e.g. under scripts/with-postgres.sh), migrates it,
starts gunicorn on 127.0.0.1, and drives it from client threads with a mix of create,
heartbeat, PATCH (status change), get-one and list requests, each from the operations the
server's schema offers. Then it stops everything it started.

    python bench/soak.py                    # 180 s, 8 client threads
    python bench/soak.py --duration 600 --clients 12 --workers 3

Prints the count of answers per operation and status, the errors (anything but the
expected answers), and each worker's RSS at the start (after warm-up), at the end and at
its highest. Exit status 1 when there was an unexpected answer. Not part of the test
suite: its result is recorded in docs/reliability.md.
"""

import argparse
import collections
import contextlib
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/soak.py`: devtools
from devtools.net import request  # noqa: E402
from devtools.postgres import ThrowawayPostgres  # noqa: E402
from devtools.servers import Gunicorn, create_user_with_token, manage, service_env  # noqa: E402

# Relative weight of each operation in the mix, when the server offers it.
MIX = {"create": 2, "heartbeat": 3, "patch": 2, "get": 1, "list": 2}
# Answers that are part of normal life, per operation: everything else is an error.
EXPECTED = {
    "create": {201},
    "heartbeat": {200, 409},  # 409: someone finished it meanwhile; the worker stops
    "patch": {200, 400},  # 400: someone else changed it first
    "get": {200},
    "list": {200},
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, port: int, token: str, execution_ids: list[str], operations: set[str]):
        self.port = port
        self.auth = {"Authorization": f"Token {token}"}
        self.running = list(execution_ids)  # executions believed running, to heartbeat or finish
        self.all_ids = list(execution_ids)
        self.operations = [name for name in MIX if name in operations]
        self.weights = [MIX[name] for name in self.operations]
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = collections.Counter()
        self.error_samples: list[str] = []

    def _pick_running(self, rng, remove=False):
        """An execution believed running; once none is left, any execution (then the
        answer is a 400 or `success: false`, both expected)."""
        with self.lock:
            if not self.running:
                return rng.choice(self.all_ids)
            index = rng.randrange(len(self.running))
            execution_id = self.running[index]
            if remove:
                self.running[index] = self.running[-1]
                self.running.pop()
            return execution_id

    def one_request(self, rng):
        operation = rng.choices(self.operations, self.weights)[0]
        if operation == "create":
            body = {"name": f"soak-{rng.randrange(10**9)}", "metadata": {"n": rng.randrange(100)}}
            answer = request(self.port, "POST", "/api/v1/executions", body, self.auth)
            if answer[0] == 201:
                with self.lock:
                    self.running.append(answer[2]["id"])
                    self.all_ids.append(answer[2]["id"])
        elif operation == "heartbeat":
            execution_id = self._pick_running(rng)
            answer = request(
                self.port, "POST", f"/api/v1/executions/{execution_id}/heartbeat", None, self.auth
            )
        elif operation == "patch":
            execution_id = self._pick_running(rng, remove=True)
            status = rng.choice(["cancelled", "failed", "completed"])
            body = {"status": status, **({"error_info": {"why": "soak"}} if status == "failed" else {})}
            answer = request(self.port, "PATCH", f"/api/v1/executions/{execution_id}", body, self.auth)
        elif operation == "get":
            with self.lock:
                execution_id = rng.choice(self.all_ids)
            answer = request(self.port, "GET", f"/api/v1/executions/{execution_id}", None, self.auth)
        else:
            query = rng.choice(
                ["", "?status=running", "?status=failed,cancelled", "?page_size=5", "?stale=true"]
            )
            answer = request(self.port, "GET", f"/api/v1/executions{query}", None, self.auth)
        with self.lock:
            self.counts[(operation, answer[0])] += 1
            if answer[0] not in EXPECTED[operation]:
                self.errors[(operation, answer[0])] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{operation} {answer[0]} {str(answer[2])[:300]}")

    def client(self, seed: int, stop_at: float):
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            try:
                self.one_request(rng)
            except OSError as exc:  # a refused or reset connection is an error too
                with self.lock:
                    self.errors[("connection", type(exc).__name__)] += 1


def offered_operations(port: int) -> set[str]:
    paths = request(port, "GET", "/api/schema/?format=json")[2]
    paths = paths.get("paths", {}) if isinstance(paths, dict) else {}
    offered = set()
    collection = paths.get("/api/v1/executions", {})
    item = paths.get("/api/v1/executions/{execution_id}", {})
    if "post" in collection:
        offered.add("create")
    if "get" in collection:
        offered.add("list")
    if "get" in item:
        offered.add("get")
    if "patch" in item:
        offered.add("patch")
    if "post" in paths.get("/api/v1/executions/{execution_id}/heartbeat", {}):
        offered.add("heartbeat")
    return offered


@contextlib.contextmanager
def postgres_database():
    given = os.environ.get("DATABASE_URL", "")
    if given.startswith("postgres"):
        yield given
        return
    with ThrowawayPostgres() as server:
        server.create_database()
        yield server.url()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=int(os.environ.get("SOAK_SECONDS", 180)))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed-executions", type=int, default=2000)
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    args = parser.parse_args()

    with postgres_database() as database_url:
        env = service_env(database_url, DATABASE_CONN_MAX_AGE="600")
        manage(env, "migrate", "--no-input")
        token = create_user_with_token(env, f"soak-{os.getpid()}")
        seed_code = (
            "from django.contrib.auth.models import User; from executions.services import execution_create;"
            f"owner = User.objects.get(username='soak-{os.getpid()}');"
            "print(*[execution_create(name='seed', created_by=owner).id"
            f" for _ in range({args.seed_executions})])"
        )
        execution_ids = manage(env, "shell", "-c", seed_code).split()[-args.seed_executions :]

        with Gunicorn(env, workers=args.workers, threads=args.threads) as server:
            operations = offered_operations(server.port)
            soak = Soak(server.port, token, execution_ids, operations)
            print(
                f"soak: {args.duration}s, {args.clients} clients, gunicorn {args.workers}x{args.threads} "
                f"(gthread) on PostgreSQL; operations: {', '.join(soak.operations)}",
                flush=True,
            )

            # Warm-up: every worker has imported everything and opened its connection.
            warm_until = time.monotonic() + min(15, args.duration / 6)
            warm = [
                threading.Thread(target=soak.client, args=(1000 + n, warm_until)) for n in range(args.clients)
            ]
            for thread in warm:
                thread.start()
            for thread in warm:
                thread.join()
            soak.counts.clear()

            workers = server.worker_pids()
            samples = {pid: [rss_kib(pid)] for pid in workers}
            started = time.monotonic()
            stop_at = started + args.duration
            clients = [threading.Thread(target=soak.client, args=(n, stop_at)) for n in range(args.clients)]
            for thread in clients:
                thread.start()
            while time.monotonic() < stop_at:
                time.sleep(min(args.sample_every, max(0, stop_at - time.monotonic())))
                for pid in workers:
                    with contextlib.suppress(FileNotFoundError):
                        samples[pid].append(rss_kib(pid))
            for thread in clients:
                thread.join()
            elapsed = time.monotonic() - started
            restarted = set(workers) - set(server.worker_pids())
            log_tail = server.log()

    total = sum(soak.counts.values())
    print(f"\nrequests: {total} in {elapsed:.0f}s ({total / elapsed:.0f}/s)")
    for (operation, status), count in sorted(soak.counts.items()):
        print(f"  {operation:9} {status}: {count}")
    print(f"unexpected answers: {sum(soak.errors.values())}")
    for key, count in sorted(soak.errors.items(), key=str):
        print(f"  {key}: {count}")
    for sample in soak.error_samples:
        print(f"  e.g. {sample}")
    print("worker RSS (MiB): start -> end (max); at each fifth of the run")
    for pid, values in samples.items():
        fifths = [values[round(step * (len(values) - 1) / 5)] / 1024 for step in range(6)]
        print(
            f"  {pid}: {values[0] / 1024:.1f} -> {values[-1] / 1024:.1f} ({max(values) / 1024:.1f}); "
            + " ".join(f"{value:.1f}" for value in fifths)
        )
    if restarted:
        print(f"workers that died or were replaced: {sorted(restarted)}")
    if "Traceback" in log_tail:
        print("gunicorn log has a traceback:\n" + log_tail)
    print(
        json.dumps(
            {
                "requests": total,
                "seconds": round(elapsed),
                "unexpected": sum(soak.errors.values()),
                "rss_mib": {
                    str(pid): [
                        round(values[0] / 1024, 1),
                        round(values[-1] / 1024, 1),
                        round(max(values) / 1024, 1),
                    ]
                    for pid, values in samples.items()
                },
            }
        )
    )
    return 1 if soak.errors or restarted else 0


if __name__ == "__main__":
    sys.exit(main())
