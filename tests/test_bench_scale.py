"""bench/scale.py's generator makes the mix it promises (the benchmark at ten million rows
measures nothing if the rows are not what docs/performance.md says they are)."""

import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models.functions import Coalesce

from executions.ids import uuid7_time_ms
from executions.models import Execution, ExecutionStatusChange

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import scale  # noqa: E402

ROWS = 3000
PATCH_EXECUTIONS = 40


@pytest.fixture
def generated(db):
    first = User.objects.create_user("bench")
    with connection.cursor() as cursor:
        cursor.execute(scale.insert_owners_sql(connection.vendor, scale.OWNERS - 1))
    now = datetime.now(UTC)
    statements = scale.generation_sql(
        connection.vendor,
        now_ms=int(now.timestamp() * 1000),
        finished=ROWS - ROWS // 100,
        running=ROWS // 100,
        patch_executions=PATCH_EXECUTIONS,
        first_owner=first.pk,
        bench_owner=first.pk,
    )
    for sql in statements:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    connection.check_constraints()  # every audit record's execution, every owner, exists
    return first, now


def test_the_mix_is_one_percent_running_the_rest_finished_over_ninety_days(generated):
    bench, now = generated
    mix = Execution.objects.exclude(name="bench-patch")
    assert mix.count() == ROWS
    statuses = Counter(mix.values_list("status", flat=True))
    # By n mod 50 over n = 1..2970: 45 in 50 completed, 3 failed, 1 cancelled, 1 interrupted.
    assert statuses == {"running": 30, "completed": 2675, "failed": 177, "cancelled": 59, "interrupted": 59}
    finished = mix.exclude(status="running")
    oldest = finished.order_by("created_at").values_list("created_at", flat=True).first()
    newest = finished.order_by("-created_at").values_list("created_at", flat=True).first()
    assert now - timedelta(days=90) <= oldest < now - timedelta(days=89)
    assert now - timedelta(hours=2) < newest < now
    assert all(
        timedelta(seconds=1) <= finished_at - created_at <= timedelta(minutes=10)
        for created_at, finished_at in finished.values_list("created_at", "finished_at")
    )
    failed_why = mix.filter(status="failed").values_list("error_info", flat=True)
    assert list(failed_why) == [{"reason": "exit code 1"}] * 177
    assert mix.values("created_by").distinct().count() == scale.OWNERS
    assert mix.filter(created_by=bench).count() == 2  # the first owner: n = 1000 and 2000


def test_every_finished_execution_has_its_audit_record(generated):
    records = ExecutionStatusChange.objects.select_related("execution")
    assert records.count() == ROWS - ROWS // 100
    for record in records:
        assert (record.previous_status, record.new_status) == ("running", record.execution.status)
        assert record.created_at == record.execution.finished_at


def test_two_thirds_of_the_running_are_stale_and_the_patch_runs_get_their_own(generated):
    bench, now = generated
    running = Execution.objects.filter(status="running").annotate(
        seen=Coalesce("last_heartbeat_at", "created_at")
    )
    stale = running.filter(seen__lt=now - timedelta(days=1)).exclude(name="bench-patch")
    assert stale.count() == 19  # created more than a day ago: n = 1..19 of 30
    assert running.exclude(name="bench-patch").filter(seen__gte=now - timedelta(minutes=2)).count() == 11
    patch = running.filter(name="bench-patch")
    assert patch.count() == PATCH_EXECUTIONS
    assert set(patch.values_list("created_by", flat=True)) == {bench.pk}


def test_ids_are_version_7_of_each_creation_time(generated):
    for execution_id, created_at in Execution.objects.values_list("id", "created_at"):
        assert isinstance(execution_id, uuid.UUID) and execution_id.version == 7
        assert execution_id.variant == uuid.RFC_4122
        assert abs(uuid7_time_ms(execution_id) - created_at.timestamp() * 1000) < 1
