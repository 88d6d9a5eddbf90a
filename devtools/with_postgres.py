"""Run COMMAND [ARGS...] with DATABASE_URL pointing at a throwaway PostgreSQL server (and
PG_BIN at its binaries), then stop the server and delete its folder, whatever COMMAND did.
Exits with COMMAND's status; 3 when no PostgreSQL server binaries are installed.

    scripts/with-postgres.sh COMMAND [ARGS...]     (the documented entry point)
    python -m devtools.with_postgres COMMAND [ARGS...]
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

if not __package__:  # run as a file (scripts/with-postgres.sh), from any folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from devtools.postgres import ThrowawayPostgres, postgres_bin  # noqa: E402

NO_POSTGRES = 3


def main(command: list[str]) -> int:
    if not command:
        print("usage: scripts/with-postgres.sh COMMAND [ARGS...]", file=sys.stderr)
        return 2
    bin_dir = postgres_bin()
    if bin_dir is None:
        print("with-postgres: no PostgreSQL server binaries found (set PG_BIN)", file=sys.stderr)
        return NO_POSTGRES
    # A SIGTERM ends this process through the `with` below, so the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        # Durability settings off: this server lives for one command.
        with ThrowawayPostgres(bin_dir, max_connections=200) as postgres:
            postgres.create_database()
            env = {**os.environ, "DATABASE_URL": postgres.url(), "PG_BIN": bin_dir}
            try:
                status = subprocess.run(command, env=env).returncode
            except FileNotFoundError:
                print(f"with-postgres: {command[0]}: command not found", file=sys.stderr)
                return 127
            except KeyboardInterrupt:
                return 128 + signal.SIGINT
    except RuntimeError as error:  # initdb or the server's start failed: what it said
        print(f"with-postgres: {error}", file=sys.stderr)
        return 1
    # Killed by a signal: the status a shell would report.
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
