#!/usr/bin/env bash
# All the benchmarks, on SQLite and on a throwaway PostgreSQL: one line, some minutes.
#   bench/run_all.sh            # full sizes (1M rows; expect 30-60 minutes on 2 cores)
#   QUICK=1 bench/run_all.sh    # small sizes, to check that everything runs (a few minutes)
# Needs wrk (apt-get install wrk) and PostgreSQL's server binaries; the PATCH benchmark also
# runs the FastAPI peer from ../shared/peer-fastapi when it is there (its own venv in var/).
# Every server and temporary database it starts is stopped and removed, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements/bench.txt
python=.venv/bin/python
if [ -n "${QUICK:-}" ]; then
    patch_args=(--duration 5 --executions 30000)
    cleanup_args=(--sizes 10000,30000)
    purge_args=(--size 30000)
    pages_args=(--executions 100000 --depth 1000 --requests 50)
    admin_args=(--executions 100000 --requests 5)
    scale_args=(--rows 100000 --compare 20000 --requests 5 --duration 3 --patch-executions 10000)
    worker_args=(--size 100000 --running 1000 --backlog 2000)
    notify_args=(--changes 10000 --floor-requests 5000)
else
    patch_args=()
    cleanup_args=()
    purge_args=()
    pages_args=()
    admin_args=()
    scale_args=(--rows 1000000 --compare 100000)  # 10M: its own command, docs/performance.md
    worker_args=()
    notify_args=()
fi
for database in sqlite postgresql; do
    run=()
    [ $database = postgresql ] && run=(scripts/with-postgres.sh)
    echo "=== $database: PATCH and heartbeat throughput, against the floor and the FastAPI peer"
    env -u DATABASE_URL "${run[@]}" $python bench/patch_throughput.py "${patch_args[@]}"
    echo "=== $database: cleanup at scale"
    env -u DATABASE_URL "${run[@]}" $python bench/cleanup_at_scale.py "${cleanup_args[@]}"
    echo "=== $database: purge at scale"
    env -u DATABASE_URL "${run[@]}" $python bench/purge_at_scale.py "${purge_args[@]}"
    echo "=== $database: deep pages"
    env -u DATABASE_URL "${run[@]}" $python bench/deep_pages.py "${pages_args[@]}"
    echo "=== $database: admin changelist"
    env -u DATABASE_URL "${run[@]}" $python bench/admin_changelist.py "${admin_args[@]}"
    echo "=== $database: the same figures at several sizes"
    env -u DATABASE_URL "${run[@]}" $python bench/scale.py "${scale_args[@]}"
    echo "=== $database: the worker (promptness, idle sweep, backlog)"
    env -u DATABASE_URL "${run[@]}" $python bench/worker_promptness.py "${worker_args[@]}"
    echo "=== $database: notifications, a backlog drained by one worker"
    env -u DATABASE_URL "${run[@]}" $python bench/notifications_throughput.py "${notify_args[@]}"
done
