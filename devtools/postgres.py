"""A throwaway PostgreSQL server: initdb in a temporary folder, as a non-root user, on a free
port of 127.0.0.1. In Python so that a test can stop the server halfway through;
scripts/with-postgres.sh runs a command against one (devtools/with_postgres.py).

Standard library only at import: scripts/with-postgres.sh may run it without the venv.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile

from devtools.net import free_port


def postgres_bin() -> str | None:
    """The PostgreSQL server binaries' folder (PG_BIN, else the newest installed), or None."""
    candidates = (
        [os.environ["PG_BIN"]]
        if os.environ.get("PG_BIN")
        else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    )
    for folder in reversed(candidates):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    return None


class ThrowawayPostgres:
    """A PostgreSQL server of its own in a temporary folder; `stop()` and `start()` may be
    called any number of times; `destroy()` stops it and deletes the folder. As a context
    manager it is destroyed on leaving."""

    def __init__(self, bin_dir: str | None = None, durable: bool = False, max_connections: int = 100):
        # Durable: a commit that was acknowledged survives `stop()` (a crash of PostgreSQL,
        # not of the machine, so fsync may stay off). Not durable: faster, for load only.
        self.durable = durable
        self.max_connections = max_connections
        self.bin_dir = bin_dir or postgres_bin()
        if self.bin_dir is None:
            raise RuntimeError("No PostgreSQL server binaries found (set PG_BIN)")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="executions-pg-")
        try:
            os.chmod(self.workdir, 0o755)
            self.run_as: list[str] = []
            if os.getuid() == 0:
                # initdb and postgres refuse to run as root.
                user = os.environ.get("PG_OS_USER", "postgres")
                if subprocess.run(["id", user], capture_output=True).returncode != 0:
                    subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
                shutil.chown(self.workdir, user)
                # runuser lives in /usr/sbin, which a plain user's PATH may lack.
                self.run_as = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"]
            self.data = os.path.join(self.workdir, "data")
            self._pg(["initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            self.start()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def url(self, database: str = "executions") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg(self, args: list[str]) -> None:
        command = [*self.run_as, os.path.join(self.bin_dir, args[0]), *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir} "
            f"-c fsync=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        if not self.durable:
            options += " -c synchronous_commit=off"
        self._pg(
            [
                "pg_ctl",
                "-D",
                self.data,
                "-l",
                os.path.join(self.workdir, "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )

    def stop(self) -> None:
        """Stop at once, as a crash would: every open connection is cut."""
        self._pg(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])

    def create_database(self, name: str = "executions") -> None:
        self._pg(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name])

    def query(self, sql: str, params=(), database: str = "executions") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database)) as connection:
            return connection.execute(sql, params).fetchall()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.destroy()
