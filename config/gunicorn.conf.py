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
import sys

from django.core.exceptions import ImproperlyConfigured

from config import gunicorn_response
from executions.metrics import gunicorn_child_exit as child_exit  # noqa: F401
from executions.metrics import gunicorn_on_starting as on_starting  # noqa: F401

# A response's head leaves with its body, never alone (config/gunicorn_response.py), so that
# a worker killed mid-answer gives the client nginx's JSON 502, not a truncated answer.
gunicorn_response.install()

wsgi_app = "config.wsgi:application"

# The settings are read here, in the master, once: a configuration error (a missing secret,
# a malformed DATABASE_URL) is one line and exit status 1, not a traceback per worker and
# "Worker failed to boot".
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
try:
    from django.conf import settings

    settings.DATABASES  # noqa: B018 (reading it loads the settings)
except ImproperlyConfigured as error:
    sys.exit(f"gunicorn: {error}")

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
# are bounded by nginx (large_client_header_buffers: a line of 8 KB), so gunicorn's limits stay
# out of its way: twice that, room for what nginx adds (X-Forwarded-For grows by an address).
# Not 0: gunicorn reads 0 as its default, 8190, which let a header line of 8,189-8,190 bytes
# pass nginx and meet gunicorn's HTML 431.
limit_request_line = 8190
limit_request_fields = 32768
limit_request_field_size = 16384
# nginx passes any method of capital letters, "_" and "-"; gunicorn would refuse one over 20
# characters with its HTML 400. Django answers it instead: 405 METHOD_NOT_ALLOWED, in JSON.
permit_unconventional_http_method = True

# Logs go to standard error; Django logs each request with its correlation id already.
errorlog = "-"
accesslog = None
