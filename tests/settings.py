"""The service's settings, with what the test suite needs on top: a throwaway secret (the
real settings have no default secret), no .env file, fast password hashing, and a test database of its
own per run."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")
# Never the developer's .env (scripts/serve.sh writes one): the suite, and every process it
# starts, runs with what the environment and the tests say, on any machine alike.
os.environ["DJANGO_ENV_FILE"] = ""
# The suite's own process counts its metrics in a folder of this run's own, never in the
# checkout's var/metrics; the servers and workers the tests start get folders of their own
# (devtools.servers.service_env).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="executions-test-metrics-")
atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
# The tests' webhook receivers listen on 127.0.0.1, which the SSRF guard refuses by default;
# the SSRF tests turn it back on (tests/test_notification_ssrf.py). Set in the environment,
# so the worker processes the tests start inherit it.
os.environ.setdefault("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", "true")

from config.settings import *  # noqa: E402,F403
from config.settings import DATABASES, REST_FRAMEWORK  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# On SQLite the test database is a file too, so that WAL and the busy timeout behave as in
# production; a folder of its own per run, so that two runs in one checkout never share it.
if DATABASES["default"]["ENGINE"] == "executions.db.sqlite3":
    _test_database_folder = tempfile.mkdtemp(prefix="executions-test-")
    atexit.register(shutil.rmtree, _test_database_folder, ignore_errors=True)
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_test_database_folder, "test.sqlite3")}

# No rate limits, so that no test is ever throttled by the requests of the tests before it
# (the counters live in the per-process cache); tests/test_throttling.py sets its own rates.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": None, "anon": None}}
# Lockouts after failed admin logins are switched on by the tests about them, so that other
# tests may log in (and fail to) with Django's test client freely.
AXES_ENABLED = False

# Every test client builds the middleware anew, and WhiteNoise's scan of every app's static
# files at build time was about half of the quick loop. Looking each file up when it is asked
# for (what it does with DEBUG on) serves the same files from the same finders.
WHITENOISE_AUTOREFRESH = True
