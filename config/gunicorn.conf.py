"""gunicorn's settings in production: behind deploy/nginx.conf, started by deploy/serve.py
(scripts/serve-production.sh), which passes the bind address and the control socket.

nginx reads every request completely (headers and body) before it hands it on, and bounds
what a client may send, so gunicorn's threads only ever wait for the application, never for
a slow client. What gunicorn still checks on its own would answer with its HTML pages: its
limits are set at or above nginx's so that they never trigger before nginx's JSON answers.

Metrics under several worker processes (executions/metrics.py): every worker writes its
counters to files in PROMETHEUS_MULTIPROC_DIR (by default the checkout's var/metrics, which
the worker process and the commands share) and a scrape adds them up. prometheus_client
chooses that mode when it is first imported: importing executions.metrics here, in the
master, settles the folder before anything else imports it; the workers inherit it.
"""

import multiprocessing
import os

from executions.metrics import gunicorn_child_exit as child_exit  # noqa: F401
from executions.metrics import gunicorn_on_starting as on_starting  # noqa: F401

wsgi_app = "config.wsgi:application"

# Processes and threads per process. gunicorn's own rule of thumb for the processes; two
# threads each overlap one request's database wait with another's Python work.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count() + 1)
threads = int(os.environ.get("GUNICORN_THREADS") or 2)
worker_class = "gthread"

# A worker silent for this long (a request stuck in Python) is killed and replaced; nginx
# answers that request 502 in JSON. deploy/serve.py gives nginx a slightly longer timeout.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 30
# Longer than nginx's idle upstream connections live (deploy/nginx.conf: keepalive_timeout
# in the upstream block), so that nginx, not gunicorn, closes an idle one.
keepalive = 75

# A request line up to 8 KB reaches Django (a long id is the API's 404, not a 414): gunicorn's
# maximum, 8190, is also what fits nginx's 8 KB header buffer with its CRLF. Header fields
# are bounded by nginx (large_client_header_buffers), so gunicorn's limits stay out of its way.
limit_request_line = 8190
limit_request_fields = 32768
limit_request_field_size = 0
# nginx passes any method of capital letters, "_" and "-"; gunicorn would refuse one over 20
# characters with its HTML 400. Django answers it instead: 405 METHOD_NOT_ALLOWED, in JSON.
permit_unconventional_http_method = True

# Logs go to standard error; Django logs each request with its correlation id already.
errorlog = "-"
accesslog = None
