"""Faults: the database goes away under load and comes back; many SQLite writers at once.

The PostgreSQL fault tests start a PostgreSQL server and gunicorn of their own (devtools/),
so that stopping that server does not disturb the rest of the suite. They run in the
PostgreSQL pass of scripts/test.sh, where PostgreSQL's binaries are known to be present.
"""

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from devtools.net import request
from devtools.postgres import ThrowawayPostgres
from devtools.servers import REPO_ROOT, Gunicorn, create_user_with_token, manage, service_env
from executions import services
from executions.api.error_codes import ErrorCode
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_create

from ..api import ERROR_RESPONSE_KEYS
from ..factories import ExecutionFactory, UserFactory, api_key_for

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

# A bound on every wait below, so that a broken service fails the test instead of hanging it.
DEADLINE_SECONDS = 120


@pytest.fixture(scope="module")
def service():
    """A durable throwaway PostgreSQL, migrated, with an operator's token, and gunicorn on it."""
    postgres = ThrowawayPostgres(durable=True)
    try:
        postgres.create_database()
        env = service_env(postgres.url(), DATABASE_CONN_MAX_AGE="600")
        manage(env, "migrate", "--no-input")
        token = create_user_with_token(env, "operator", superuser=True)
        with Gunicorn(env, workers=2, threads=4) as gunicorn:
            yield postgres, env, token, gunicorn
    finally:
        postgres.destroy()


def create_running_executions(env, count: int) -> list[str]:
    code = (
        "from executions.services import execution_create;"
        f"print(*[execution_create(name='fault-{{}}'.format(n)).id for n in range({count})])"
    )
    return manage(env, "shell", "-c", code).split()[-count:]


def assert_database_unavailable(answer):
    status, headers, body = answer
    assert status == 503, answer
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"].isdigit()
    assert set(body) == ERROR_RESPONSE_KEYS, body
    assert body["error_code"] == ErrorCode.SERVICE_UNAVAILABLE
    assert body["correlation_id"] == headers["X-Request-ID"]


def assert_each_change_recorded_once(postgres, execution_ids):
    """A status change happened exactly once (one audit record, matching the row) or not at
    all (still running, no audit record)."""
    rows = postgres.query(
        "SELECT e.id::text, e.status, count(c.id), max(c.new_status) FROM executions_execution e "
        "LEFT JOIN executions_executionstatuschange c ON c.execution_id = e.id "
        "WHERE e.id::text = ANY(%s) GROUP BY e.id, e.status",
        (list(execution_ids),),
    )
    assert len(rows) == len(execution_ids)
    for execution_id, status, changes, new_status in rows:
        if status == ExecutionStatus.RUNNING:
            assert changes == 0, execution_id
        else:
            assert (changes, new_status) == (1, status), execution_id
    return {execution_id: status for execution_id, status, _, _ in rows}


@pytest.mark.postgres_only
def test_idle_connections_to_a_restarted_database_are_replaced_without_errors(service):
    """Every gunicorn thread holds a persistent connection; PostgreSQL restarts while no
    request is running; the health check at the next request notices the dead connection
    and opens a new one, so not even the first request after the restart fails."""
    postgres, env, token, gunicorn = service
    execution_ids = create_running_executions(env, 64)
    auth = {"Authorization": f"Token {token}"}

    def patch_all(ids, status):
        with ThreadPoolExecutor(8) as pool:
            return list(
                pool.map(
                    lambda execution_id: request(
                        gunicorn.port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": status}, auth
                    ),
                    ids,
                )
            )

    warm = patch_all(execution_ids[:32], "completed")
    assert [answer[0] for answer in warm] == [200] * 32

    postgres.stop()
    postgres.start()

    after = patch_all(execution_ids[32:], "cancelled")
    assert [(answer[0], answer[2]["success"]) for answer in after] == [(200, True)] * 32
    assert_each_change_recorded_once(postgres, execution_ids)


@pytest.mark.postgres_only
def test_database_down_under_load_is_503_json_then_recovers_without_restart(service):
    """Six clients send every kind of request in turn (PATCH, create, heartbeat, list, get,
    history, readiness) while PostgreSQL is stopped and started again under them."""
    postgres, env, token, gunicorn = service
    to_cancel = iter(create_running_executions(env, 2000)).__next__
    # Never cancelled: heartbeats, reads and history always have a running execution.
    alive = create_running_executions(env, 1)[0]
    operations = [
        ("patch", lambda: ("PATCH", f"/api/v1/executions/{to_cancel()}", {"status": "cancelled"}), {200}),
        ("create", lambda: ("POST", "/api/v1/executions", {"name": "fault-create"}), {201}),
        ("heartbeat", lambda: ("POST", f"/api/v1/executions/{alive}/heartbeat", None), {200}),
        ("list", lambda: ("GET", "/api/v1/executions?page_size=5", None), {200}),
        ("get", lambda: ("GET", f"/api/v1/executions/{alive}", None), {200}),
        ("history", lambda: ("GET", f"/api/v1/executions/{alive}/history", None), {200}),
        ("readyz", lambda: ("GET", "/readyz", None), {200}),
    ]
    lock = threading.Lock()
    answers = []  # (phase when sent, phase when answered, operation, (method, path, body), answer)
    phase = {"now": "up"}
    stop = threading.Event()
    auth = {"Authorization": f"Token {token}"}

    def client(offset):
        for number in itertools.count(offset):
            if stop.is_set():
                return
            name, make, _ = operations[number % len(operations)]
            with lock:
                sent = make()
            sent_in = phase["now"]
            answer = request(gunicorn.port, *sent, auth)
            with lock:
                answers.append((sent_in, phase["now"], name, sent, answer))

    def count(predicate):
        with lock:
            return sum(1 for entry in answers if predicate(entry))

    def wait_for(predicate, how_many):
        deadline = time.monotonic() + DEADLINE_SECONDS
        while count(predicate) < how_many:
            assert time.monotonic() < deadline, f"waited too long for {how_many} answers"
            time.sleep(0.01)

    with ThreadPoolExecutor(6) as pool:
        clients = [pool.submit(client, offset) for offset in range(6)]
        wait_for(lambda entry: entry[4][0] in (200, 201), 100)

        phase["now"] = "stopping"
        postgres.stop()
        phase["now"] = "down"
        wait_for(lambda entry: entry[0] == "down", 100)
        while_down = {path: request(gunicorn.port, "GET", path) for path in ("/api/schema/", "/healthz")}

        phase["now"] = "starting"
        postgres.start()
        phase["now"] = "up again"
        wait_for(lambda entry: entry[0] == "up again", 100)
        stop.set()
        for future in clients:
            future.result()

    succeeded = {name: expected for name, _, expected in operations}
    for sent_in, answered_in, name, sent, answer in answers:
        if answer[0] == 503:
            assert_database_unavailable(answer)
        else:
            assert answer[0] in succeeded[name], (name, sent, answer)
        if sent_in == "down" and answered_in == "down":
            assert answer[0] == 503, (name, sent, answer)
        if sent_in == "up again":
            # Recovered on its own: no restart of gunicorn, and no failure after the restart.
            assert answer[0] in succeeded[name], (name, sent, answer)
    down = [entry for entry in answers if entry[0] == entry[1] == "down"]
    assert {name for _, _, name, _, _ in down} == set(succeeded), "every kind of request met the outage"
    # What needs no database keeps working while it is down.
    assert {path: answer[0] for path, answer in while_down.items()} == {"/api/schema/": 200, "/healthz": 200}

    patched = {sent[1].rsplit("/", 1)[1]: answer for _, _, name, sent, answer in answers if name == "patch"}
    statuses = assert_each_change_recorded_once(postgres, patched)
    for execution_id, answer in patched.items():
        if answer[0] == 200:
            # Told success: the change is there, and reported as made.
            assert answer[2]["success"] is True
            assert statuses[execution_id] == ExecutionStatus.CANCELLED
    # A client that was told 503 retries and gets a definite answer either way.
    for execution_id in [execution_id for execution_id, answer in patched.items() if answer[0] == 503]:
        status, _, body = request(
            gunicorn.port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": "cancelled"}, auth
        )
        assert status == 200 and body["current_status"] == ExecutionStatus.CANCELLED
        assert body["success"] is (statuses[execution_id] == ExecutionStatus.RUNNING)
    assert_each_change_recorded_once(postgres, patched)

    # Every create that was answered 201 is there (a 503 may or may not have committed).
    created = [answer[2]["id"] for _, _, name, _, answer in answers if name == "create" and answer[0] == 201]
    attempts = sum(1 for entry in answers if entry[2] == "create")
    stored = {
        row[0]
        for row in postgres.query("SELECT id::text FROM executions_execution WHERE name = 'fault-create'")
    }
    assert set(created) <= stored
    assert len(stored) <= attempts
    assert "Traceback" not in gunicorn.log()


@pytest.mark.django_db(transaction=True)
def test_sixteen_sqlite_writers_never_see_database_is_locked(live_server):
    """16 threads, each with its own SQLite connection, create executions directly while the
    live server (a thread and a connection per request) applies their PATCHes: WAL, BEGIN
    IMMEDIATE and the busy timeout make every writer wait its turn instead of failing."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has row locks")
    port = urlsplit(live_server.url).port
    owner = UserFactory(username="writer")
    token = api_key_for(owner)
    writers, rounds = 16, 12
    targets = itertools.cycle([ExecutionStatus.CANCELLED, ExecutionStatus.FAILED, ExecutionStatus.COMPLETED])
    target_of = [next(targets) for _ in range(writers)]
    barrier = threading.Barrier(writers)

    def writer(index):
        try:
            barrier.wait()
            answers = []
            for number in range(rounds):
                execution = execution_create(name=f"writer-{index}-{number}", created_by=owner)
                answers.append(
                    request(
                        port,
                        "PATCH",
                        f"/api/v1/executions/{execution.id}",
                        {"status": target_of[index]},
                        {"Authorization": f"Token {token}"},
                    )
                )
            return answers
        finally:
            connection.close()

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(writer, range(writers)))

    for index, answers in enumerate(results):
        for status, _, body in answers:
            assert status == 200, body
            assert body["success"] is True and body["current_status"] == target_of[index]
    assert Execution.objects.count() == writers * rounds
    assert ExecutionStatusChange.objects.count() == writers * rounds
    assert not Execution.objects.filter(status=ExecutionStatus.RUNNING).exists()


def test_sixteen_writers_in_gunicorn_processes_and_a_cleanup_on_one_sqlite_file(tmp_path):
    """The embedded mode as deployed: one SQLite file, gunicorn with 4 worker processes of 4
    threads (16 writers), 16 clients creating, heartbeating and finishing executions, and the
    cleanup command interrupting 300 stale ones from a process of its own, all at once.
    Nobody sees "database is locked" (it would be a 503): every request gets its usual
    answer, and every change has its audit record."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only (its own file; once per suite run is enough)")
    env = service_env(f"sqlite:///{tmp_path / 'embedded.sqlite3'}")
    manage(env, "migrate", "--no-input")
    token = create_user_with_token(env, "writer")
    manage(
        env,
        "shell",
        "-c",
        (
            "from datetime import timedelta; from django.utils import timezone;"
            "from executions.models import Execution;"
            "day_ago = timezone.now() - timedelta(days=1);"
            "Execution.objects.bulk_create([Execution(name='stale', created_at=day_ago) for _ in range(300)])"
        ),
    )
    auth = {"Authorization": f"Token {token}"}
    clients, rounds = 16, 8
    targets = [ExecutionStatus.CANCELLED, ExecutionStatus.FAILED, ExecutionStatus.COMPLETED]

    def client(index):
        answers = []
        for _ in range(rounds):
            created = request(gunicorn.port, "POST", "/api/v1/executions", {"name": f"writer-{index}"}, auth)
            answers.append(("create", created))
            if created[0] != 201:
                continue
            path = f"/api/v1/executions/{created[2]['id']}"
            answers.append(("heartbeat", request(gunicorn.port, "POST", f"{path}/heartbeat", None, auth)))
            answers.append(
                ("patch", request(gunicorn.port, "PATCH", path, {"status": targets[index % 3]}, auth))
            )
        return answers

    with Gunicorn(env, workers=4, threads=4) as gunicorn:
        cleanup = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "cleanup_stale_executions",
                "--older-than",
                "1h",
                "--batch-size",
                "10",
                "--json",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(client, range(clients)))
        cleanup_out, cleanup_err = cleanup.communicate(timeout=DEADLINE_SECONDS)
        log = gunicorn.log()

    expected = {"create": 201, "heartbeat": 200, "patch": 200}
    for answers in results:
        assert len(answers) == 3 * rounds
        for kind, (status, _, body) in answers:
            assert status == expected[kind], (kind, status, body)
    assert cleanup.returncode == 0, cleanup_err
    assert json.loads(cleanup_out.strip().splitlines()[-1])["changed"] == 300
    assert "locked" not in log and "Traceback" not in log
    counts = manage(
        env,
        "shell",
        "-c",
        (
            "from executions.models import Execution, ExecutionStatusChange;"
            "changes = ExecutionStatusChange.objects;"
            "print(Execution.objects.count(), Execution.objects.filter(status='running').count(),"
            " changes.count(), changes.values('execution').distinct().count())"
        ),
    ).split()[-4:]
    total = 300 + clients * rounds
    # executions, still running, audit records, executions with an audit record
    assert [int(count) for count in counts] == [total, 0, total, total]


@pytest.mark.urls("tests.fault_urls")
def test_database_errors_outside_drf_views_are_503_json_too(client):
    """Django's handler500 sees what DRF's exception handler never does (middleware, plain
    views): under /api/ a database error there is still a JSON 503, a bug a JSON 500."""
    client.raise_request_exception = False
    answer = client.get("/api/test-only/database-gone")
    assert_database_unavailable((answer.status_code, answer.headers, answer.json()))

    answer = client.get("/api/test-only/bug")
    assert answer.status_code == 500
    assert answer.json()["error_code"] == ErrorCode.INTERNAL_ERROR
    assert set(answer.json()) == ERROR_RESPONSE_KEYS

    # Outside /api/ (the admin) an HTML page, but a 503 all the same.
    answer = client.get("/test-only/database-gone")
    assert answer.status_code == 503
    assert answer["Content-Type"].startswith("text/html")
    assert int(answer["Retry-After"]) > 0


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_connection_cut_in_the_middle_of_a_change_is_503_and_changes_nothing(live_server, monkeypatch):
    """PostgreSQL drops the request's connection just before the change is sent (on PostgreSQL
    the compare-and-set and its audit INSERT are one statement, so there is no moment between
    them to cut): the client gets a JSON 503, nothing is changed (still running, no audit
    record), and the retry succeeds on a new connection."""
    from django.db import connections

    owner = UserFactory(username="worker")
    token = api_key_for(owner)
    execution = execution_create(name="cut", created_by=owner)
    port = urlsplit(live_server.url).port
    original_change = services.compare_and_set
    cuts = []

    def change_after_losing_the_connection(*args):
        if not cuts:
            backend_pid = connections["default"].connection.info.backend_pid
            params = connections["default"].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            with psycopg.connect(**params, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
            cuts.append(backend_pid)
        return original_change(*args)

    monkeypatch.setattr(services, "compare_and_set", change_after_losing_the_connection)
    auth = {"Authorization": f"Token {token}"}
    answer = request(port, "PATCH", f"/api/v1/executions/{execution.id}", {"status": "failed"}, auth)
    assert cuts
    assert_database_unavailable(answer)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert not ExecutionStatusChange.objects.filter(execution=execution).exists()

    status, _, body = request(port, "PATCH", f"/api/v1/executions/{execution.id}", {"status": "failed"}, auth)
    assert (status, body["success"]) == (200, True)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert ExecutionStatusChange.objects.filter(execution=execution).count() == 1


def _database_url_of_this_test() -> str:
    """The test database as a DATABASE_URL, for a manage.py command in its own process."""
    settings_dict = connection.settings_dict
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


def _wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"waited too long for {what}"
        time.sleep(0.05)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_cleanup_killed_mid_run_leaves_whole_batches_and_a_rerun_finishes():
    """`cleanup_stale_executions` in its own process, batches of 50, oldest first: a worker
    holds a row lock on an execution of the fifth batch, so the command commits four batches
    and waits on the fifth; it is killed there with SIGKILL. Exactly the four batches are
    applied, each change with its audit record; the fifth is rolled back with the dead
    connection. A rerun changes the rest, and nothing twice."""
    long_ago = timezone.now() - timedelta(days=2)
    # Oldest first: the order the command takes them in.
    stale = [ExecutionFactory(created_at=long_ago - timedelta(seconds=500 - n)).id for n in range(500)]
    env = {
        **service_env(_database_url_of_this_test()),
        "EXECUTIONS_BULK_BATCH_SIZE": "50",
    }
    command = [
        sys.executable,
        "manage.py",
        "cleanup_stale_executions",
        "--older-than",
        "1h",
        "--batch-size",
        "50",
        "--json",
    ]
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)

    with psycopg.connect(**params) as worker, psycopg.connect(**params, autocommit=True) as observer:
        # The worker's transaction locks the 226th execution (batch 5) and stays open.
        worker.execute("SELECT id FROM executions_execution WHERE id = %s FOR UPDATE", [stale[225]])
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:

            def waiting_backend():
                rows = observer.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).fetchall()
                return rows[0][0] if rows else None

            _wait_for(
                lambda: waiting_backend() is not None or process.poll() is not None,
                "the command to wait for the worker's lock",
            )
            assert process.poll() is None, process.communicate()
            command_backend = waiting_backend()
            changes_at_kill = ExecutionStatusChange.objects.count()
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=DEADLINE_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        worker.rollback()  # the worker lets go; the dead command's backend finds its client gone
        _wait_for(
            lambda: (
                not observer.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [command_backend]
                ).fetchall()
            ),
            "the killed command's backend to end",
        )

    assert process.returncode == -signal.SIGKILL
    assert changes_at_kill == 200
    changed = set(
        Execution.objects.filter(pk__in=stale, status=ExecutionStatus.INTERRUPTED).values_list(
            "pk", flat=True
        )
    )
    assert changed == set(stale[:200])  # four whole batches, oldest first, and nothing of the fifth
    assert ExecutionStatusChange.objects.count() == 200
    assert set(ExecutionStatusChange.objects.values_list("execution_id", flat=True)) == changed
    assert Execution.objects.filter(pk__in=stale[200:], status=ExecutionStatus.RUNNING).count() == 300

    rerun = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE_SECONDS
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["changed"], summary["skipped"]) == (300, 0)
    assert Execution.objects.filter(pk__in=stale, status=ExecutionStatus.INTERRUPTED).count() == 500
    assert ExecutionStatusChange.objects.count() == 500
    assert ExecutionStatusChange.objects.values("execution").distinct().count() == 500
