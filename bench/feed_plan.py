"""The change feed's page query on PostgreSQL with many audit records: EXPLAIN ANALYZE of a
page in the middle of the feed, for a manager (every record) and for an owner whose
executions are 1 in 100 (the feed index is walked and the others' records are filtered out).

    scripts/with-postgres.sh python bench/feed_plan.py     # PostgreSQL only (empty database)

Options: --rows N (200000) audit records, written in transactions of 20,000.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-not-a-secret")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from executions.models import ExecutionStatusChange  # noqa: E402
from executions.selectors import status_changes_after, status_changes_visible_to  # noqa: E402

PAGE = 50
BATCH = 20_000


def seed(rows: int, owner, other) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO executions_execution"
            " (id, name, status, metadata, created_by_id, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'job', 'cancelled', '{}',"
            " CASE WHEN g %% 100 = 0 THEN %s ELSE %s END, now(), now() FROM generate_series(1, %s) g",
            [owner.pk, other.pk, rows],
        )
    for start in range(0, rows, BATCH):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO executions_executionstatuschange"
                " (execution_id, previous_status, new_status, actor_username, channel,"
                " correlation_id, created_at)"
                " SELECT id, 'running', 'cancelled', '', 'api', '', now() FROM executions_execution"
                " ORDER BY id OFFSET %s LIMIT %s",
                [start, BATCH],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: run it under scripts/with-postgres.sh")
    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner, other = User.objects.create_user("feed-owner"), User.objects.create_user("feed-other")
    manager = User.objects.create_user("feed-manager", is_superuser=True)
    seed(args.rows, owner, other)
    middle = ExecutionStatusChange.objects.order_by("transaction_id", "id").values_list(
        "transaction_id", "id"
    )[args.rows // 2]
    for label, user in [("manager", manager), ("owner of 1 in 100", owner)]:
        page = status_changes_after(status_changes_visible_to(user), middle)[: PAGE + 1]
        sql, params = page.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN ANALYZE " + sql, params)
            print(f"== {label}, {args.rows} records, a page from the middle")
            print("\n".join(row[0] for row in cursor.fetchall()))


if __name__ == "__main__":
    main()
