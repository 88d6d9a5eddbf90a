"""Schema-driven fuzzing: schemathesis reads the live server's own OpenAPI schema and tests
every operation with it, authenticated with a token, in all its phases (examples, coverage,
fuzzing, and stateful sequences along the links it infers, e.g. from a create's Location),
with its default checks, all of them: no 5xx, every answer as the schema documents it
(status, content type, headers, body), every request that the schema forbids answered 4xx,
every schema-valid one accepted, auth enforced. Its default generation too: NUL characters
included. So the schema states what the API takes.

tests/fuzz/ holds its settings (the answers the contract gives to schema-valid requests
because of the state they meet: 400 and 412 on PATCH, 422 for a reused Idempotency-Key) and
its hooks, which only teach it the format of the API's opaque cursors; nothing is filtered
or rewritten. It runs on both databases. FUZZ_MAX_EXAMPLES (per operation and phase, default
100), FUZZ_MAX_TIME (seconds; fuzzing and stateful phases repeat until it is spent) and
FUZZ_SEED ("random" for a new seed each run) make it run longer; see docs/reliability.md.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from executions.models import (
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    Monitor,
    NotificationEndpoint,
    NotificationMessage,
)

from ..factories import (
    ExecutionFactory,
    NotificationEndpointFactory,
    NotificationMessageFactory,
    UserFactory,
    api_key_for,
    monitor_for,
)

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

FUZZ_DIR = Path(__file__).parent.parent / "fuzz"
DEFAULT_SEED = "20261129"


def schemathesis_command(schema_url: str, token: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(FUZZ_DIR / "schemathesis.toml"),
        "run",
        schema_url,
        "--header",
        f"Authorization: Token {token}",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "100"),
        "--generation-database",
        "none",
        # One: hypothesis describing its strategies from several threads at once tripped
        # CPython 3.11's parser ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    seed = os.environ.get("FUZZ_SEED", DEFAULT_SEED)
    if seed != "random":
        command += ["--seed", seed]
    if os.environ.get("FUZZ_MAX_TIME"):
        command += ["--max-time", os.environ["FUZZ_MAX_TIME"]]
    return command


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_nothing_wrong(live_server, tmp_path):
    fuzzer = UserFactory(username="fuzzer")
    token = api_key_for(fuzzer)
    # Someone else's: the fuzzer must be told 404 for these, and change nothing.
    someone_else = UserFactory(username="someone-else")
    others = [ExecutionFactory(created_by=someone_else) for _ in range(20)]
    # Someone else's monitors: 404 for the fuzzer, never changed or deleted.
    other_monitors = [monitor_for(someone_else, name=f"theirs-{number}") for number in range(5)]
    # Someone else's notification endpoints, with a failed delivery each (replayable): the same.
    other_endpoints = [NotificationEndpointFactory(owner=someone_else) for _ in range(3)]
    for endpoint in other_endpoints:
        NotificationMessageFactory(endpoint=endpoint, attempts_made=1, state="failed")
    other_endpoints_before = _notification_rows(other_endpoints)
    port = urlsplit(live_server.url).port

    result = subprocess.run(
        schemathesis_command(f"http://127.0.0.1:{port}/api/schema/", token),
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(FUZZ_DIR / "hooks.py"),
            # The hooks encode cursors with the API's code and the live server's settings.
            "PYTHONPATH": str(FUZZ_DIR.parent.parent),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        cwd=tmp_path,  # where schemathesis keeps its cache
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]

    # The fuzzer created executions and changed some of them (the stateful phase follows a
    # create's Location to its PATCH)...
    changed = Execution.objects.filter(created_by=fuzzer).exclude(status=ExecutionStatus.RUNNING)
    assert changed.exists(), result.stdout[-5000:]
    # ...each exactly once, with its audit record; nobody else's.
    for execution in Execution.objects.all():
        changes = list(ExecutionStatusChange.objects.filter(execution=execution))
        if execution.status == ExecutionStatus.RUNNING:
            assert changes == []
        else:
            assert [(change.previous_status, change.new_status) for change in changes] == [
                (ExecutionStatus.RUNNING, execution.status)
            ]
            assert changes[0].actor_id == fuzzer.id
    assert (
        not Execution.objects.filter(pk__in=[execution.id for execution in others])
        .exclude(status=ExecutionStatus.RUNNING)
        .exists()
    )
    # Someone else's monitors are as they were.
    for monitor in other_monitors:
        assert Monitor.objects.filter(pk=monitor.pk, state="new", name=monitor.name).exists()
    # Someone else's endpoints and deliveries are as they were.
    assert _notification_rows(other_endpoints) == other_endpoints_before


def _notification_rows(endpoints) -> tuple:
    ids = [endpoint.pk for endpoint in endpoints]
    return (
        list(NotificationEndpoint.objects.filter(pk__in=ids).order_by("pk").values()),
        list(NotificationMessage.objects.filter(endpoint__in=ids).order_by("pk").values()),
    )
