"""The service's settings, with what the test suite needs on top: a throwaway secret (the
real settings have no default secret) and fast password hashing."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No rate limits, so that no test is ever throttled by the requests of the tests before it
# (the counters live in the per-process cache); tests/test_throttling.py sets its own rates.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": None, "anon": None}}  # noqa: F405
# Lockouts after failed admin logins are switched on by the tests about them, so that other
# tests may log in (and fail to) with Django's test client freely.
AXES_ENABLED = False
