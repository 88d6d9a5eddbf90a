"""`manage.py purge_executions ...` that stops still after archiving its Nth batch, inside
that batch's transaction (its rows archived, not yet deleted), and says so by creating a
file: the moment a test kills it with SIGKILL.

    python tests/purge_paused.py N MARKER_PATH purge_executions --finished-before 90d ...
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.core.management import execute_from_command_line  # noqa: E402

from executions.retention.archive import GzipJsonLinesArchive  # noqa: E402

pause_after, marker = int(sys.argv[1]), Path(sys.argv[2])
real_append = GzipJsonLinesArchive.append
batches = 0


def append_then_pause(self, records):
    global batches
    real_append(self, records)
    batches += 1
    if batches == pause_after:
        marker.touch()
        time.sleep(600)


GzipJsonLinesArchive.append = append_then_pause
execute_from_command_line(["manage.py", *sys.argv[3:]])
