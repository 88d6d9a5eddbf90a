"""Schema-driven fuzzing: schemathesis reads the live server's own OpenAPI schema and tests
every operation with it, authenticated with a token, in all its phases (examples, coverage,
fuzzing, and stateful sequences where the schema links operations), with every check:
no 5xx, every answer as the schema documents it (status, content type, headers, body),
every request that the schema forbids answered 4xx, every schema-valid one accepted, auth
enforced. tests/fuzz/ holds its settings and hooks.

It runs in the PostgreSQL pass only: the production database, whose column types refuse
more than SQLite's (NUL in text, invalid JSON), and one pass keeps the suite's time in
budget. FUZZ_MAX_EXAMPLES (per operation and phase, default 100), FUZZ_MAX_TIME (seconds;
fuzzing and stateful phases repeat until it is spent) and FUZZ_SEED ("random" for a new
seed each run) make it run longer; see docs/reliability.md.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from executions.models import Execution, ExecutionStatus, ExecutionStatusChange

from ..factories import ExecutionFactory, UserFactory, api_key_for

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
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "100"),
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--request-timeout",
        "30",
    ]
    seed = os.environ.get("FUZZ_SEED", DEFAULT_SEED)
    if seed != "random":
        command += ["--seed", seed]
    if os.environ.get("FUZZ_MAX_TIME"):
        command += ["--max-time", os.environ["FUZZ_MAX_TIME"]]
    return command


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_nothing_wrong(live_server, tmp_path):
    fuzzer = UserFactory(username="fuzzer")
    token = api_key_for(fuzzer)
    own = [ExecutionFactory(created_by=fuzzer) for _ in range(300)]
    # Someone else's: the fuzzer must be told 404 for these, and change nothing.
    others = [ExecutionFactory(created_by=UserFactory(username="someone-else")) for _ in range(20)]
    port = urlsplit(live_server.url).port

    result = subprocess.run(
        schemathesis_command(f"http://127.0.0.1:{port}/api/schema/", token),
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(FUZZ_DIR / "hooks.py"),
            "PYTHONPATH": str(FUZZ_DIR.parent.parent),  # the hooks read cursors with the API's code
            "FUZZ_EXECUTION_IDS": " ".join(str(execution.id) for execution in own + others),
        },
        cwd=tmp_path,  # where schemathesis keeps its cache
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]

    # The fuzzer reached real executions and changed some of them...
    changed = Execution.objects.filter(pk__in=[execution.id for execution in own]).exclude(
        status=ExecutionStatus.RUNNING
    )
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
