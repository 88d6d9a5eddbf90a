"""No request takes a gunicorn worker above 256 MB, whatever the API lets users store
(docs/api.md: limits). The worst case is seeded straight into the database: 450 executions
whose `metadata` and `error_info` are each as large as the API takes, in the shape that costs
Python the most memory per byte (empty objects), and 50 older ones far larger than that
(the issue's ~18,500 small keys, ~256 KiB: what the API took before the limits), each with
its audit record. Then one worker serves every endpoint that returns them (the list, the
change feed, one execution, its history, a heartbeat, a PATCH, the admin's list and pages),
one request at a time, and its peak RSS (VmHWM) is read from /proc."""

import json
import re
from pathlib import Path

import pytest
from django.db import connection

from devtools.net import request
from devtools.postgres import ThrowawayPostgres
from devtools.servers import Gunicorn, manage, service_env
from executions.api.limits import MAX_JSON_OBJECT_BYTES

pytestmark = pytest.mark.slow

LIMIT_BYTES = 256 * 1024 * 1024
DENSE = 450
LEGACY = 50

SEED = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from executions.models import Execution, ExecutionStatusChange
from executions.tokens import token_create

dense = {"a": [{} for _ in range(DENSE_ITEMS)]}
legacy = {f"k{number}": number for number in range(18_500)}
owner = User.objects.create_user("worker")
operator = User.objects.create_superuser("operator", password="x")
# The operator's admin session, as a login would make it.
session = SessionStore()
session[SESSION_KEY] = str(operator.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = operator.get_session_auth_hash()
session.create()

def failed(info):
    return Execution(name="big", created_by=owner, status="failed", metadata=info, error_info=info)

rows = [failed(legacy) for _ in range(LEGACY)] + [failed(dense) for _ in range(DENSE)]
Execution.objects.bulk_create(rows, batch_size=25)
ExecutionStatusChange.objects.bulk_create(
    [
        ExecutionStatusChange(
            execution=row, previous_status="running", new_status="failed", error_info=row.error_info,
            channel="api",
        )
        for row in rows
    ],
    batch_size=25,
)
running = Execution.objects.create(name="big", created_by=owner, metadata=legacy)
print(json.dumps({"token": token_create(user=owner, name="memory")[1], "session": session.session_key,
                  "legacy": str(rows[0].pk), "dense": str(rows[-1].pk), "running": str(running.pk)}))
"""


# As many empty objects as MAX_JSON_OBJECT_BYTES holds: ~20 times its size in Python.
DENSE_ITEMS = (MAX_JSON_OBJECT_BYTES - len('{"a":[]}')) // 3 + 1


def dense_object() -> dict:
    value = {"a": [{} for _ in range(DENSE_ITEMS)]}
    assert len(json.dumps(value, separators=(",", ":"))) <= MAX_JSON_OBJECT_BYTES
    return value


def memory_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)[1])


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    if connection.vendor == "postgresql":
        with ThrowawayPostgres() as postgres:
            postgres.create_database()
            yield postgres.url()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('memory') / 'db.sqlite3'}"


@pytest.fixture(scope="module")
def seeded(database_url):
    env = service_env(database_url)
    manage(env, "migrate", "--no-input")
    code = SEED.replace("DENSE_ITEMS", str(DENSE_ITEMS))
    output = manage(env, "shell", "-c", code.replace("LEGACY", str(LEGACY)).replace("DENSE", str(DENSE)))
    return env, json.loads(output.strip().splitlines()[-1])


def test_no_request_takes_a_worker_above_256_mb_and_the_memory_comes_back(seeded):
    env, ids = seeded
    api = {"Authorization": f"Token {ids['token']}"}
    admin = {"Cookie": f"sessionid={ids['session']}"}
    # One worker, one thread: every request below is alone in the process that is measured.
    with Gunicorn(env, workers=1, threads=1) as gunicorn:
        [worker] = gunicorn.worker_pids()

        def send(method, path, body=None, headers=api):
            return request(gunicorn.port, method, path, body, headers=headers, timeout=120)

        assert send("GET", "/api/v1/executions?page_size=1")[0] == 200
        assert send("GET", "/admin/executions/execution/?q=nothing", headers=admin)[0] == 200
        settled_kb = memory_kb(worker, "VmRSS")

        listed, path = 0, "/api/v1/executions?page_size=500"
        while path:
            status, _, body = send("GET", path)
            assert status == 200, body
            listed += len(body["results"])
            path = body["next"] and body["next"].split(f":{gunicorn.port}", 1)[1]
        assert listed == LEGACY + DENSE + 1

        changes, path = 0, "/api/v1/status-changes?page_size=500"
        while path:
            status, _, body = send("GET", path)
            assert status == 200, body
            changes += len(body["results"])
            path = body["has_more"] and f"/api/v1/status-changes?page_size=500&after={body['next_cursor']}"
        assert changes == LEGACY + DENSE

        one = "/api/v1/executions/{}"
        changelist = "/admin/executions/execution/"
        answers = [
            send("GET", one.format(ids["legacy"])),
            send("GET", one.format(ids["dense"])),
            send("GET", one.format(ids["legacy"]) + "/history"),
            send("GET", one.format(ids["dense"]) + "/history"),
            send("POST", one.format(ids["running"]) + "/heartbeat"),
            send("PATCH", one.format(ids["running"]), {"status": "failed", "error_info": dense_object()}),
            send("GET", changelist, headers=admin),
            send("GET", f"{changelist}?p=2", headers=admin),
            send("GET", f"{changelist}{ids['legacy']}/change/", headers=admin),
            send("GET", f"{changelist}{ids['dense']}/change/", headers=admin),
        ]
        assert [status for status, _, _ in answers] == [200] * len(answers)
        assert len(answers[0][2]["metadata"]) == 18_500
        assert b"k18499" in answers[-2][2]  # the admin page shows the whole of it

        peak_kb, after_kb = memory_kb(worker, "VmHWM"), memory_kb(worker, "VmRSS")
        print(f"worker RSS: {settled_kb} kB settled, {peak_kb} kB peak, {after_kb} kB after")
        assert peak_kb * 1024 < LIMIT_BYTES
        # What the requests took is given back: the worker is not left holding a page's worth.
        assert after_kb < settled_kb + 32 * 1024
