"""A job for tests/system/test_executions_run.py to run under executions-run.

    python tests/wrapped_job.py STATE_DIR EXIT_CODE [--stderr-bytes N] [--ignore-sigterm]

It leaves traces in STATE_DIR for the test to read: `pid` (its own), `grandchild` (the pid of
a process it starts in its process group), `sigterm` (written when it gets SIGTERM),
`execution_id` (what executions-run gave it in EXECUTIONS_EXECUTION_ID). It runs
until the test creates STATE_DIR/release, then prints to standard output, writes N bytes to
standard error and exits with EXIT_CODE. On SIGTERM it dies of it, unless --ignore-sigterm.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# It never outlives a test that forgot it.
GIVE_UP_AFTER_SECONDS = 120

parser = argparse.ArgumentParser()
parser.add_argument("state_dir", type=Path)
parser.add_argument("exit_code", type=int)
parser.add_argument("--stderr-bytes", type=int, default=0)
parser.add_argument("--ignore-sigterm", action="store_true")
args = parser.parse_args()


def on_sigterm(signum, frame):
    (args.state_dir / "sigterm").write_text("received")
    if not args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


signal.signal(signal.SIGTERM, on_sigterm)
# Deaf to SIGTERM, like a stubborn helper: only SIGKILL to the group ends it early.
STUBBORN = (
    f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep({GIVE_UP_AFTER_SECONDS})"
)
grandchild = subprocess.Popen([sys.executable, "-c", STUBBORN])
(args.state_dir / "grandchild").write_text(str(grandchild.pid))
(args.state_dir / "execution_id").write_text(os.environ.get("EXECUTIONS_EXECUTION_ID", ""))
(args.state_dir / "pid").write_text(str(os.getpid()))

deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
while not (args.state_dir / "release").exists():
    if time.monotonic() > deadline:
        sys.exit(99)
    time.sleep(0.05)

grandchild.kill()
grandchild.wait()
print("job output", flush=True)
# Lines numbered from the start, so that a test can tell which part of the output was kept.
text = "".join(f"line {n:06d}\n" for n in range(args.stderr_bytes // 12 + 1))[: args.stderr_bytes]
sys.stderr.write(text)
sys.stderr.flush()
sys.exit(args.exit_code)
