"""The FastAPI peer (`<repo>/../shared/peer-fastapi`, see its README): found, installed in a
virtual environment of its own (var/peer-venv, kept between runs), seeded, and served by
uvicorn on a free port of 127.0.0.1, for the PATCH benchmark to measure side by side."""

import contextlib
import hashlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness

VENV = harness.PROJECT / "var" / "peer-venv"


def peer_folder() -> Path | None:
    """`<repo>/../shared/peer-fastapi`; in a git worktree, beside the main checkout too."""
    candidates = [harness.PROJECT.parent / "shared" / "peer-fastapi"]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=harness.PROJECT,
        capture_output=True,
        text=True,
    )
    if common.returncode == 0:
        candidates.append(Path(common.stdout.strip()).parent.parent / "shared" / "peer-fastapi")
    return next((folder for folder in candidates if (folder / "app.py").exists()), None)


def _venv_python(requirements: Path) -> Path:
    """The peer's virtual environment, made and installed once per version of its requirements."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    stamp.write_text(digest)
    return python


@contextlib.contextmanager
def peer_server(source: Path, folder: Path, executions: int, workers: int):
    """Serve a copy of the peer (shared/ is read-only) seeded with `executions` running
    executions; yields (base URL, the file of their ids)."""
    python = _venv_python(source / "requirements.txt")
    copy = folder / "peer"
    shutil.copytree(source, copy)
    env = {"PATH": "/usr/bin:/bin", "DB": str(folder / "peer.sqlite3")}
    ids_file = folder / "peer-ids.txt"
    with open(ids_file, "w") as out:
        subprocess.run([str(python), "seed.py", str(executions)], cwd=copy, env=env, stdout=out, check=True)
    port = harness.free_port()
    log = open(folder / "peer.log", "wb")
    process = subprocess.Popen(
        [
            str(python),
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base_url, process)
        yield base_url, ids_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_serving(base_url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer exited with {process.returncode}")
        try:
            urllib.request.urlopen(base_url + "/openapi.json", timeout=5).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the peer did not serve within {timeout}s")
