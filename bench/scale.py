"""The service at ten million rows, against the same figures at 100k and 1M rows.

For each size (--compare's, then --rows), a database of its own, filled in SQL (no ORM row
by row: generate_series on PostgreSQL, a recursive CTE on SQLite), with the secondary
indexes built after the rows and foreign keys not checked row by row (the rows are right by
construction), then VACUUM ANALYZE / ANALYZE:
- 1,000 owners; the benchmark's user is one of them (it owns 1 in 1,000 of everything);
- 99% of the rows finished, created evenly over the last 90 days, each finished 1 s to
  10 min after its creation: 90% completed, 6% failed (with error_info), 2% cancelled,
  2% interrupted; one audit record each (so 9.9M audit records at 10M);
- 1% running, created over the last 3 days: those created more than a day ago last
  reported 10 minutes after they started (stale: what the cleanup takes), the others in
  the last minute;
- time-ordered ids (UUIDv7) of each row's creation time, as the service makes them;
- plus, outside the mix, --patch-executions running executions of the benchmark's user,
  created in the last hour, for the PATCH runs (the same number at every size).

Then, at every size, in this order:
- reads, over HTTP on one connection to gunicorn (1 worker), p50 of --requests requests
  after 10 warm-up ones: the list's first page and a page --depth pages deep (a manager,
  who sees every row), the owner's first page, a page of the change feed from its middle
  (the manager; the owner, whose records are 1 in 1,000), one execution's history;
- the admin's changelist in-process (a superuser, Django's test Client): the default page,
  the failed ones, a name search; p50 against 100 ms;
- PATCH and heartbeat throughput: one gunicorn per size (--workers each), wrk as in
  bench/patch_throughput.py, runs interleaved across the sizes (PATCH x2, heartbeat x2), so
  the machine's noise falls on all sizes alike; the largest size against the smallest;
- the cleanup (`cleanup_stale_executions --older-than 1d`: about 0.67% of the rows) and the
  purge (`purge_executions --finished-before 80d`: about 11%), each as a process of its own;
  time per row from the time each reports for its own work (without Python's start-up), the
  largest size against 1M.

    scripts/with-postgres.sh .venv/bin/python bench/scale.py                  # 10M, against 100k and 1M
    scripts/with-postgres.sh .venv/bin/python bench/scale.py --rows 1000000 --compare 100000
    .venv/bin/python bench/scale.py --rows 1000000 --compare 100000           # SQLite

Options: --rows N (10000000)  --compare N,N (100000,1000000; empty: none)  --requests N (30)
--depth PAGES (10000, fewer where the table has fewer)  --duration SECONDS per wrk run (10)
--workers N (2)  --patch-executions N (50000)  --skip-writes (reads and admin only)
Every database is removed at the end, also on failure or Ctrl-C.
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import deep_pages
import harness

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_requests.lua"
OWNERS = 1000
RUNNING_SHARE = 100  # 1 in 100 running
DAY_MS = 86_400_000
ADMIN_TARGET_MS = 100
THROUGHPUT_TARGET = 0.90  # the largest size keeps at least 90% of the smallest's throughput
PER_ROW_TARGET = 1.2  # the bulk commands' time per row at the largest size / at 1M
HEARTBEAT_EXECUTIONS = 1000
JOB_NAMES = 10_000  # 'job-0' .. 'job-9999': at 10M, 1,000 executions of each job
SEARCHED_NAME = "job-4321"


def main():
    args = harness.parse_options(
        __doc__,
        rows=10_000_000,
        compare="100000,1000000",
        requests=30,
        depth=10_000,
        duration=10,
        workers=2,
        patch_executions=50_000,
        skip_writes=False,
    )
    sizes = sorted({int(size) for size in args.compare.split(",") if size.strip()} | {args.rows})
    vendor = "postgresql" if harness.GIVEN_DATABASE_URL.startswith("postgres") else "sqlite"
    print(
        f"bench/scale.py on {vendor}, sizes {', '.join(f'{size:,}' for size in sizes)}, "
        f"{os.cpu_count()} cores"
    )
    results = {size: {} for size in sizes}
    with contextlib.ExitStack() as stack:
        databases = {}
        for size in sizes:
            database_url, folder = stack.enter_context(harness.bench_database(suffix=f"_{size}"))
            started = time.perf_counter()
            seeded = step(database_url, "generate", size, args.patch_executions, str(folder))
            seeded["seconds"] = time.perf_counter() - started
            databases[size] = (database_url, folder, seeded)
            results[size]["generate"] = seeded
            print(
                f"{size:>11,} rows generated in {seeded['seconds']:.0f} s "
                f"({seeded['executions']:,} executions, "
                f"{seeded['audit_records']:,} audit records, {seeded['database_mb']:,.0f} MB)",
                flush=True,
            )
        for size, (database_url, folder, seeded) in databases.items():
            results[size]["reads"] = measure_reads(database_url, folder, seeded, args)
            results[size]["admin"] = step(database_url, "admin", args.requests)
            print(f"{size:>11,} rows: reads and admin measured", flush=True)
        if not args.skip_writes:
            measure_throughput(databases, args, results)
            for size, (database_url, _, _) in databases.items():
                results[size]["cleanup"] = measure_command(
                    database_url, ["cleanup_stale_executions", "--older-than", "1d"], "stale"
                )
                results[size]["purge"] = measure_command(
                    database_url, ["purge_executions", "--finished-before", "80d"], "purgeable"
                )
                print(f"{size:>11,} rows: cleanup and purge measured", flush=True)
    report(vendor, sizes, results, args)


def step(database_url: str, name: str, *arguments) -> dict:
    """Run `step_<name>(*arguments)` of this module in a process of its own set up against
    `database_url` (one Django per database); its JSON result."""
    try:
        output = harness.run_django(
            database_url,
            f"import sys; sys.path.insert(0, 'bench'); import scale; scale.step_{name}(*sys.argv[1:])",
            *[str(argument) for argument in arguments],
        )
    except subprocess.CalledProcessError as error:
        sys.exit(f"step {name} failed:\n{error.stdout}{error.stderr}")
    return json.loads(output.strip().splitlines()[-1])


# --- Generation ------------------------------------------------------------------------


def step_generate(rows: str, patch_executions: str, folder: str) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    from executions.api.pagination import encode_feed_cursor
    from executions.models import Execution, ExecutionStatusChange
    from executions.tokens import token_create

    rows, patch_executions = int(rows), int(patch_executions)
    bench = User.objects.create_user("bench")
    with connection.cursor() as cursor:
        cursor.execute(insert_owners_sql(connection.vendor, OWNERS - 1))
    owner_ids = list(User.objects.order_by("pk").values_list("pk", flat=True))
    assert owner_ids == list(range(bench.pk, bench.pk + OWNERS)), "owners' ids are not contiguous"
    manager = User.objects.create_superuser("bench-manager")
    now_ms = harness.unix_ms(datetime.now(UTC))
    running = rows // RUNNING_SHARE
    statements = generation_sql(
        connection.vendor,
        now_ms=now_ms,
        finished=rows - running,
        running=running,
        patch_executions=patch_executions + HEARTBEAT_EXECUTIONS,
        first_owner=bench.pk,
        bench_owner=bench.pk,
    )
    with without_secondary_indexes(connection):
        for sql in statements:
            with connection.cursor() as cursor:
                cursor.execute(sql)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")

    # What the measurements need: tokens, the ids of the PATCH runs, cursors.
    ids = [
        str(pk)
        for pk in Execution.objects.filter(created_by=bench, status="running", name="bench-patch")
        .order_by("pk")
        .values_list("pk", flat=True)
    ]
    half = (len(ids) - HEARTBEAT_EXECUTIONS) // 2
    files = {"patch1": ids[:half], "patch2": ids[half : 2 * half], "heartbeat": ids[2 * half :]}
    for name, chunk in files.items():
        Path(folder, f"{name}-ids.txt").write_text("\n".join(chunk) + "\n")
    last_change = ExecutionStatusChange.objects.order_by("-pk").values_list("pk", flat=True).first()
    first_change = ExecutionStatusChange.objects.order_by("pk").values_list("pk", flat=True).first()
    middle = ExecutionStatusChange.objects.filter(pk__gte=(first_change + last_change) // 2).order_by("pk")
    middle_position = middle.values_list("transaction_id", "pk").first()
    history_of = (
        ExecutionStatusChange.objects.filter(execution__created_by=bench, pk__gte=middle_position[1])
        .order_by("pk")
        .values_list("execution_id", flat=True)
        .first()
    )
    print(
        json.dumps(
            {
                "executions": Execution.objects.count(),
                "audit_records": ExecutionStatusChange.objects.count(),
                "database_mb": database_megabytes(connection),
                "bench_token": token_create(user=bench, name="bench")[1],
                "manager_token": token_create(user=manager, name="bench")[1],
                "feed_middle": encode_feed_cursor(middle_position),
                "history_of": str(history_of),
                "patch_ids": len(ids) - HEARTBEAT_EXECUTIONS,
            }
        )
    )


def insert_owners_sql(vendor: str, count: int) -> str:
    if vendor == "postgresql":
        series = f"generate_series(1, {count}) AS n"
        return (
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
            " is_staff, is_active, date_joined)"
            f" SELECT '!', false, 'owner-' || n, '', '', '', false, true, now() FROM {series} ORDER BY n"
        )
    return (
        f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count})"
        " INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined)"
        " SELECT '!', 0, 'owner-' || n, '', '', '', 0, 1, strftime('%Y-%m-%d %H:%M:%f', 'now') FROM seq"
    )


def generation_sql(
    vendor: str,
    *,
    now_ms: int,
    finished: int,
    running: int,
    patch_executions: int,
    first_owner: int,
    bench_owner: int,
) -> list[str]:
    """The INSERT statements of the mix (the module's docstring), every number inlined (all
    are integers this module computed), so that no driver reads a percent sign."""
    postgres = vendor == "postgresql"

    def series(count: int) -> str:
        if postgres:
            return f"generate_series(1, {count}::bigint) AS n"
        return (
            "(WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq"
            f" WHERE n < {count}) SELECT n FROM seq)"
        )

    def mod(a: str, b: int) -> str:
        return f"mod({a}, {b})" if postgres else f"({a} % {b})"

    def timestamp(ms: str) -> str:
        if postgres:
            return f"to_timestamp(({ms}) / 1000.0)"
        # Django's SQLite text form of a datetime: 'YYYY-MM-DD HH:MM:SS.ffffff'.
        return f"(strftime('%Y-%m-%d %H:%M:%f', ({ms}) / 1000.0, 'unixepoch') || '000')"

    def json_text(text: str) -> str:
        return f"'{text}'::json" if postgres else f"'{text}'"

    shard = (
        f"json_build_object('shard', {mod('n', 16)})" if postgres else f"json_object('shard', {mod('n', 16)})"
    )
    uuid = harness.uuid7_sql(vendor, "ms", with_parameters=False)
    columns = (
        "INSERT INTO executions_execution (id, name, status, error_info, metadata, created_by_id,"
        " created_at, updated_at, finished_at, last_heartbeat_at)"
    )
    span_ms = 90 * DAY_MS - 3600_000  # created over 90 days, up to an hour ago
    kind = mod("n", 50)
    failed_why, stale_why = json_text('{"reason": "exit code 1"}'), json_text('{"reason": "stale"}')
    finished_rows = (
        f"{columns} SELECT {uuid}, 'job-' || {mod('n', JOB_NAMES)},"
        f" CASE WHEN {kind} < 45 THEN 'completed' WHEN {kind} < 48 THEN 'failed'"
        f" WHEN {kind} = 48 THEN 'cancelled' ELSE 'interrupted' END,"
        f" CASE WHEN {kind} >= 45 AND {kind} < 48 THEN {failed_why} WHEN {kind} = 49 THEN {stale_why} END,"
        f" {shard}, {first_owner} + {mod('n', OWNERS)},"
        f" {timestamp('ms')}, {timestamp('done_ms')}, {timestamp('done_ms')}, NULL"
        f" FROM (SELECT n, ms, ms + 1000 * (1 + {mod('n', 600)}) AS done_ms FROM"
        f" (SELECT n, {now_ms - 90 * DAY_MS} + n * {span_ms // max(finished, 1)} AS ms"
        f" FROM {series(finished)}) AS t) AS s"
    )
    # One audit record per finished execution, in id (so creation) order, as they were made.
    audit_rows = (
        "INSERT INTO executions_executionstatuschange (execution_id, previous_status, new_status,"
        " error_info, actor_id, actor_username, channel, correlation_id, created_at)"
        " SELECT e.id, 'running', e.status, e.error_info,"
        " CASE WHEN e.status = 'interrupted' THEN NULL ELSE e.created_by_id END,"
        " CASE WHEN e.status = 'interrupted' THEN '' ELSE u.username END,"
        " CASE WHEN e.status = 'interrupted' THEN 'command' ELSE 'api' END, '', e.finished_at"
        " FROM executions_execution AS e JOIN auth_user AS u ON u.id = e.created_by_id"
        " ORDER BY e.id"
    )
    # Running: created over the last 3 days; more than a day ago: last seen 10 min after.
    stale_before_ms = now_ms - DAY_MS
    running_rows = (
        f"{columns} SELECT {uuid}, 'job-' || {mod('n', JOB_NAMES)}, 'running', NULL, {shard},"
        f" {first_owner} + {mod('n', OWNERS)}, {timestamp('ms')}, {timestamp('seen_ms')}, NULL,"
        f" {timestamp('seen_ms')}"
        f" FROM (SELECT n, ms, CASE WHEN ms < {stale_before_ms} THEN ms + 600000"
        f" ELSE {now_ms} - 1000 * {mod('n', 60)} END AS seen_ms FROM"
        f" (SELECT n, {now_ms - 3 * DAY_MS} + n * {3 * DAY_MS // max(running, 1)} AS ms"
        f" FROM {series(running)}) AS t) AS s"
    )
    # The PATCH runs' executions: the benchmark user's, created in the last hour, alive.
    patch_rows = (
        f"{columns} SELECT {uuid}, 'bench-patch', 'running', NULL, {shard}, {bench_owner},"
        f" {timestamp('ms')}, {timestamp(str(now_ms))}, NULL, {timestamp(str(now_ms))}"
        f" FROM (SELECT n, {now_ms - 3600_000} + n * {3600_000 // max(patch_executions, 1)} AS ms"
        f" FROM {series(patch_executions)}) AS t"
    )
    return [finished_rows, audit_rows, running_rows, patch_rows]


@contextlib.contextmanager
def without_secondary_indexes(connection):
    """Drop the two big tables' secondary indexes, and stop checking foreign keys row by row,
    while the rows go in; build the indexes again afterwards (one sort each, instead of 10M
    insertions into each)."""
    tables = ("executions_execution", "executions_executionstatuschange")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i"
                " WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)",
                [list(tables)],
            )
            indexes = cursor.fetchall()
            cursor.execute("SET session_replication_role = replica")  # no FK triggers
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                " AND tbl_name IN (%s, %s)",
                list(tables),
            )
            indexes = cursor.fetchall()
            cursor.execute("PRAGMA foreign_keys = OFF")
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"' if connection.vendor == "sqlite" else f"DROP INDEX {name}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")
                cursor.execute("SET maintenance_work_mem = '512MB'")
            else:
                cursor.execute("PRAGMA foreign_keys = ON")
            for _, definition in indexes:
                cursor.execute(definition)


def database_megabytes(connection) -> float:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0] / 2**20
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        return pages * cursor.fetchone()[0] / 2**20


# --- Reads -----------------------------------------------------------------------------


def step_deep_cursor(depth: str) -> None:
    """The list's cursor after `depth` pages (a manager's, newest first), as the API makes it."""
    from executions.api.pagination import DEFAULT_PAGE_SIZE, encode_cursor
    from executions.models import Execution

    position = Execution.objects.order_by("-created_at", "-id").values_list("created_at", "id")[
        int(depth) * DEFAULT_PAGE_SIZE - 1
    ]
    print(json.dumps({"cursor": encode_cursor(*position)}))


def measure_reads(database_url: str, folder: Path, seeded: dict, args) -> dict:
    from_api_page_size = 50  # executions/api/pagination.py's DEFAULT_PAGE_SIZE
    depth = max(1, min(args.depth, seeded["executions"] // from_api_page_size // 2))
    deep_cursor = step(database_url, "deep_cursor", depth)["cursor"]
    manager, owner = seeded["manager_token"], seeded["bench_token"]
    cases = {
        "list, first page (manager)": ("/api/v1/executions", manager),
        # --depth pages deep, or half the table where it has fewer.
        "list, deep page (manager)": (f"/api/v1/executions?cursor={deep_cursor}", manager),
        "list, first page (owner)": ("/api/v1/executions", owner),
        "feed, middle page (manager)": (f"/api/v1/status-changes?after={seeded['feed_middle']}", manager),
        "feed, middle page (owner)": (f"/api/v1/status-changes?after={seeded['feed_middle']}", owner),
        "history (owner)": (f"/api/v1/executions/{seeded['history_of']}/history", owner),
    }
    timings = {}
    with harness.gunicorn(database_url, folder, workers=1) as base_url:
        for name, (path, token) in cases.items():
            values = deep_pages.time_requests(base_url, path, token, args.requests)
            timings[name] = {"p50_ms": statistics.median(values)}
    return timings


# --- The admin -------------------------------------------------------------------------


def step_admin(requests: str) -> None:
    import logging

    from django.contrib.auth.models import User
    from django.test import Client

    changelist = "/admin/executions/execution/"
    pages = {
        "admin, default page": changelist,
        "admin, status filter": f"{changelist}?status__exact=failed",
        f"admin, name search ({SEARCHED_NAME})": f"{changelist}?q={SEARCHED_NAME}",
    }
    logging.getLogger("executions.request").setLevel(logging.WARNING)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="bench-manager"))
    results = {}
    for label, url in pages.items():
        times = []
        for attempt in range(3 + int(requests)):
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                sys.exit(f"{url}: {response.status_code}")
            if attempt >= 3:
                times.append(elapsed)
        if "search" in label and SEARCHED_NAME not in response.content.decode():
            sys.exit(f"{url}: no execution named {SEARCHED_NAME} on the page")
        results[label] = {"p50_ms": statistics.median(times)}
    print(json.dumps(results))


# --- Writes ----------------------------------------------------------------------------


def measure_throughput(databases: dict, args, results: dict) -> None:
    with contextlib.ExitStack() as stack:
        servers = {}
        for size, (database_url, folder, seeded) in databases.items():
            base_url = stack.enter_context(harness.gunicorn(database_url, folder, workers=args.workers))
            env = {"BENCH_TOKEN": seeded["bench_token"], "BENCH_WRK_THREADS": "2"}
            servers[size] = (base_url, folder, env)
            harness.wrk(base_url, WRK_SCRIPT, 2, 16, {**env, "BENCH_MODE": "floor"})
            heartbeat_env = {
                **env,
                "BENCH_MODE": "heartbeat",
                "BENCH_IDS_FILE": str(folder / "heartbeat-ids.txt"),
            }
            harness.wrk(base_url, WRK_SCRIPT, 2, 16, heartbeat_env)
        runs = {size: {} for size in databases}

        def run(size, name, mode, ids_file="heartbeat"):
            base_url, folder, env = servers[size]
            run_env = {**env, "BENCH_MODE": mode, "BENCH_IDS_FILE": str(folder / f"{ids_file}-ids.txt")}
            runs[size][name] = harness.wrk(base_url, WRK_SCRIPT, args.duration, 16, run_env)

        smallest = min(databases)
        run(smallest, "floor", "floor")
        for index in (1, 2):
            for size in databases:
                run(size, f"PATCH {index}", "patch", f"patch{index}")
        for index in (1, 2):
            for size in databases:
                run(size, f"heartbeat {index}", "heartbeat")
    for size, size_runs in runs.items():
        for name, figures in size_runs.items():
            errors = figures["status_errors"] + figures["socket_errors"]
            if name.startswith("PATCH"):
                errors += figures["ids_exhausted"]
            if errors:
                sys.exit(f"{size:,} rows, {name}: {errors} errors: {figures}")
        results[size]["throughput"] = size_runs


def step_count(what: str, now: str) -> None:
    """How many rows the cleanup ("stale") or the purge ("purgeable") would take at `now`."""
    from django.db.models import Q
    from django.db.models.functions import Coalesce

    from executions.models import Execution

    now = datetime.fromisoformat(now)
    if what == "stale":
        seen = Coalesce("last_heartbeat_at", "created_at")
        query = Execution.objects.filter(status="running").annotate(seen=seen)
        count = query.filter(seen__lt=now - timedelta(days=1)).count()
    else:
        older = Q(finished_at__lt=now - timedelta(days=80)) & ~Q(status="running")
        count = Execution.objects.filter(older).count()
    print(json.dumps({"count": count}))


def measure_command(database_url: str, command: list[str], counted: str) -> dict:
    """The command on its rows, as a process of its own; its time per row is the time it
    reports for its own work (`--json`'s elapsed_seconds: from its first query to its last
    commit, without Python's and Django's start-up, which would swamp a small run)."""
    # Counted at one moment before the command: every row it covers, the command takes (its
    # own cutoff is a little later, so it may take a few more, which finished meanwhile).
    now = datetime.now(UTC).isoformat()
    rows = step(database_url, "count", counted, now)["count"]
    seconds, rss_mb, output = harness.run_measured(
        [harness.PYTHON, "manage.py", *command, "--json"], database_url
    )
    summary = json.loads(output.strip().splitlines()[-1])
    left = step(database_url, "count", counted, now)["count"]
    if left:
        sys.exit(f"{command[0]} left {left} of {rows} rows:\n{output}")
    done = summary["changed"] if "changed" in summary else summary["deleted"]
    return {
        "rows": done,
        "seconds": seconds,
        "elapsed_seconds": summary["elapsed_seconds"],
        "rss_mb": rss_mb,
        "us_per_row": summary["elapsed_seconds"] / max(done, 1) * 1e6,
        "summary": summary,
    }


# --- The report ------------------------------------------------------------------------


def rps(figures: dict) -> float:
    return figures["requests"] / figures["seconds"]


def report(vendor: str, sizes: list[int], results: dict, args) -> None:
    smallest, largest = sizes[0], sizes[-1]
    header = "".join(f"{size:>14,}" for size in sizes)
    print()
    print(f"{'figure':40}{header}  {'largest/smallest':>16}  target")
    print(
        f"{'generation, s':40}" + "".join(f"{results[size]['generate']['seconds']:>14.0f}" for size in sizes)
    )
    print(
        f"{'database, MB':40}"
        + "".join(f"{results[size]['generate']['database_mb']:>14,.0f}" for size in sizes)
    )

    def line(label, values, target="", ratio=True, unit_format="{:>14.2f}"):
        text = "".join(unit_format.format(value) for value in values)
        ratio_text = f"{values[-1] / values[0]:>16.2f}" if ratio and values[0] else " " * 16
        print(f"{label:40}{text}  {ratio_text}  {target}")

    for key in results[smallest]["reads"]:
        line(f"{key}, p50 ms", [results[size]["reads"][key]["p50_ms"] for size in sizes])
    for key in results[smallest]["admin"]:
        values = [results[size]["admin"][key]["p50_ms"] for size in sizes]
        verdict = "met" if max(values) <= ADMIN_TARGET_MS else "MISSED"
        line(f"{key}, p50 ms", values, f"p50 <= {ADMIN_TARGET_MS} ms: {verdict}")
    if args.skip_writes:
        return
    floor = rps(results[smallest]["throughput"]["floor"])
    for kind in ("PATCH", "heartbeat"):
        values = [
            statistics.mean(
                rps(figures) for name, figures in results[size]["throughput"].items() if name.startswith(kind)
            )
            for size in sizes
        ]
        ratio = values[-1] / values[0]
        verdict = "met" if ratio >= THROUGHPUT_TARGET else "MISSED"
        line(
            f"{kind} req/s (mean of 2 runs)",
            values,
            f">= {THROUGHPUT_TARGET:.2f}: {verdict}",
            unit_format="{:>14.0f}",
        )
        p50 = [
            statistics.mean(
                f["p50_ms"] for name, f in results[size]["throughput"].items() if name.startswith(kind)
            )
            for size in sizes
        ]
        p99 = [
            statistics.mean(
                f["p99_ms"] for name, f in results[size]["throughput"].items() if name.startswith(kind)
            )
            for size in sizes
        ]
        line(f"{kind} p50 ms", p50)
        line(f"{kind} p99 ms", p99)
    print(f"{'floor req/s (GET /healthz, smallest)':40}{floor:>14.0f}")
    per_row_base = 1_000_000 if 1_000_000 in sizes and largest > 1_000_000 else smallest
    for command in ("cleanup", "purge"):
        line(
            f"{command}, rows",
            [results[size][command]["rows"] for size in sizes],
            ratio=False,
            unit_format="{:>14,}",
        )
        line(
            f"{command}, its own work s",
            [results[size][command]["elapsed_seconds"] for size in sizes],
            ratio=False,
        )
        values = [results[size][command]["us_per_row"] for size in sizes]
        base = results[per_row_base][command]["us_per_row"]
        ratio = values[-1] / base if base else float("nan")
        verdict = "met" if ratio <= PER_ROW_TARGET else "MISSED"
        print(
            f"{command + ', us per row':40}"
            + "".join(f"{value:>14.1f}" for value in values)
            + f"  {ratio:>16.2f}  largest / {per_row_base:,} <= {PER_ROW_TARGET}: {verdict}"
        )
        line(
            f"{command}, peak RSS MB",
            [results[size][command]["rss_mb"] for size in sizes],
            ratio=False,
            unit_format="{:>14.0f}",
        )
    print("Every ratio compares the largest size with the smallest measured in the same run, except the")
    print("cleanup's and the purge's time per row, compared with the 1M run's where there is one.")


if __name__ == "__main__":
    sys.exit(main())
