"""gunicorn settings: `gunicorn --config config/gunicorn.conf.py config.wsgi`.

Metrics under several worker processes (executions/metrics.py): every worker writes its
counters to files in PROMETHEUS_MULTIPROC_DIR and a scrape adds them up. prometheus_client
chooses that mode when it is first imported, so the folder is set here, in the master,
before any import of it; the workers inherit it. Unset, a folder of this server's own is made.
(The production settings of this file are merged in beside these hooks.)
"""

import os
import tempfile

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="executions-metrics-")

from executions.metrics import gunicorn_child_exit as child_exit  # noqa: E402,F401
from executions.metrics import gunicorn_on_starting as on_starting  # noqa: E402,F401
