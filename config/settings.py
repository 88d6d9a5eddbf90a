"""Settings for the executions service.

Everything that differs between machines comes from the environment, read in one place
through ``env``. Defaults suit a developer's machine: SQLite in ``var/``, no DEBUG.

Each setting is defined once, in the section of its topic; nothing here is changed further
down, and importing this module has no side effects beyond reading the environment.
"""

import re
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from executions.durations import parse_duration
from executions.metrics_files import configured_folder

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The development settings scripts/serve.sh writes once, so that manage.py works in any
# terminal. The real environment wins over the file; DJANGO_ENV_FILE="" reads none (the tests).
ENV_FILE = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE)


def env_duration(name: str, default: str):
    """A duration ("30m") from the environment; a bad one stops every command and the server
    with one line that names the variable (manage.py prints it without a traceback)."""
    try:
        return parse_duration(env.str(name, default=default))
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


# --- Core ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A production secret has no default: without DEBUG the service refuses to start without one.
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-only-key")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: for development run scripts/serve.sh once (it writes .env), "
            "in production set the DJANGO_SECRET_KEY environment variable."
        )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    # Rate limits on the admin's login page (see Security below).
    "axes",
    "executions",
]

MIDDLEWARE = [
    # First, so that it times everything below it (executions/api/metrics.py).
    "executions.api.metrics.RequestDurationMiddleware",
    "executions.api.middleware.RequestIdMiddleware",
    "executions.api.middleware.ReleaseRenderedResponseMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the API docs' assets) from the process itself, with DEBUG off too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out admin login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Request bodies larger than this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024)

# --- Database --------------------------------------------------------------------------
# DATABASE_URL picks the engine: postgres://... for PostgreSQL (psycopg 3), or the default,
# a SQLite file in var/ (a folder kept in the repository), the embedded mode.
# A URL that names no database this service runs on is one line at start (like a missing
# secret), never a traceback from deep in Django or the driver at the first query. The URL
# itself is not repeated: it may hold a password.
DATABASE_URL_FORMS = (
    "postgres://user:password@host:5432/name, or sqlite:////absolute/path/db.sqlite3 "
    "(unset: SQLite in var/db.sqlite3)"
)


def _database_from_url(url: str) -> dict:
    try:
        with warnings.catch_warnings():  # django-environ warns of an unknown scheme, then fails
            warnings.simplefilter("ignore")
            database = environ.Env.db_url_config(url)
    except (ValueError, KeyError, TypeError):
        database = {}
    engine = database.get("ENGINE")
    if engine not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL is not a database URL this service takes: {DATABASE_URL_FORMS}"
        )
    if not database.get("NAME") or database["NAME"] == "/":
        raise ImproperlyConfigured(f"DATABASE_URL names no database: {DATABASE_URL_FORMS}")
    host = database.get("HOST") or ""
    if (
        engine == "django.db.backends.postgresql"
        and host
        and not (host.startswith("/") or re.search(r"[A-Za-z0-9]", host))
    ):
        raise ImproperlyConfigured(f"DATABASE_URL names no host: {DATABASE_URL_FORMS}")
    return database


_database = _database_from_url(
    env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
)
_database["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
_database["CONN_HEALTH_CHECKS"] = True
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with writers queued on a file lock rather than SQLite's busy
    # handler: see executions/db/sqlite3/base.py.
    _database["ENGINE"] = "executions.db.sqlite3"
    _database.setdefault("OPTIONS", {}).update(
        {
            # Writers take the write lock at BEGIN and wait for it (timeout, in seconds)
            # instead of failing halfway through a transaction with "database is locked".
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=20),
            # WAL lets readers go on while one writer writes.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
if _database["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a connection health check that needs no round trip while the
    # connection is idle and well: see executions/db/postgresql/base.py.
    _database["ENGINE"] = "executions.db.postgresql"
    # The statements every request runs are prepared once per connection (the backend says
    # why); off for a pooler in transaction mode that cannot keep them (docs/operations.md).
    _database["PREPARED_STATEMENTS"] = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
DATABASES = {"default": _database}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication --------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out admin login is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Static files ----------------------------------------------------------------------
STATIC_URL = "static/"
# `manage.py collectstatic` writes here for a deployment (var/static/ is kept in the
# repository, so WhiteNoise finds it on a fresh clone too).
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves static files straight from the apps: no collectstatic step is needed to
# run the service.
WHITENOISE_USE_FINDERS = True

# --- REST framework and the OpenAPI schema ---------------------------------------------
REST_FRAMEWORK = {
    # Token first, so that an anonymous request is told "WWW-Authenticate: Token" with its 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "executions.api.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: an API error must never come back as an HTML page.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Escape non-ASCII: a 422 echoes the client's input, and a lone surrogate in it could not
    # be encoded as UTF-8 at all.
    "UNICODE_JSON": False,
    "DEFAULT_PARSER_CLASSES": ["executions.api.parsers.JSONBodyParser"],
    "EXCEPTION_HANDLER": "executions.api.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Rates are "number/period" (s, min, hour, day); an empty value turns a throttle off.
    "DEFAULT_THROTTLE_CLASSES": [
        "executions.api.throttling.UserRateThrottle",
        "executions.api.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="600/min") or None,
        "anon": env.str("API_THROTTLE_ANON", default="60/min") or None,
    },
    # How many proxies in front of the service append to X-Forwarded-For. 0 (the default)
    # identifies an anonymous client by its socket address; DRF's own default would trust a
    # client-sent X-Forwarded-For and let it pick a fresh identity per request.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Executions API",
    # A 405 answers a method that a path has no operation for, so no operation can list it.
    "DESCRIPTION": (
        "The record of every execution, and the safe way to move one out of running.\n\n"
        "A method that a path does not list here (PUT, DELETE, POST on an execution...) is answered "
        "405 with an ErrorResponse (error_code METHOD_NOT_ALLOWED) and an Allow header; any URL "
        "under /api/ that is not listed here, 404 NOT_FOUND."
    ),
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The contract names the request component ExecutionStatusUpdateRequest, not Patched...
    "COMPONENT_SPLIT_PATCH": False,
    # ...and keeps enums inline in their properties rather than as components of their own
    # (no enum postprocessing); the one hook adds the JSON values' component the bodies name.
    "POSTPROCESSING_HOOKS": ["executions.api.openapi.components.add_storable_json"],
    # Swagger UI and ReDoc from drf-spectacular-sidecar's local copies: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Cache -----------------------------------------------------------------------------
# Throttle counters live in this cache. The default, local memory, is per process: with N
# worker processes a client gets up to N times the rate. CACHE_URL=dbcache://django_cache
# (then `manage.py createcachetable`) shares them through the database, no new server needed.
# Across several hosts: CACHE_URL=redis://host:6379/0 (Django's own Redis backend; counted
# atomically, and what happens while Redis is down: executions/api/throttling.py).
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # A Redis that stops answering (rather than refusing connections) must not hold every
    # request: after this long the throttle lets the request through. ?socket_timeout=... in
    # CACHE_URL overrides.
    for _option in ("socket_connect_timeout", "socket_timeout"):
        CACHES["default"].setdefault("OPTIONS", {}).setdefault(_option, 0.5)

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation_id": {"()": "executions.api.middleware.CorrelationIdLogFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["correlation_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Our own request log carries the correlation id; Django's would repeat it without.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        # django-axes announces itself at INFO in every process, every manage.py command.
        "axes": {"level": "WARNING"},
        # httpx logs every request of the notifications' delivery at INFO; the delivery log
        # (the database) has each attempt already.
        "httpx": {"level": "WARNING"},
    },
}

# --- Security --------------------------------------------------------------------------
# What each switch protects, and how it is tested: docs/security.md.

# Behind TLS (directly, or through a TLS-terminating proxy) DJANGO_SECURE=true turns on
# secure cookies, the redirect to HTTPS and HSTS at once; each can still be set on its own.
_secure = env.bool("DJANGO_SECURE", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=_secure)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=_secure)
# Probes of a load balancer or an orchestrator often speak plain HTTP to the process.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if _secure else 0)
# These two reach beyond this service (every subdomain; browsers' built-in lists), so they
# are the operator's explicit decision rather than part of DJANGO_SECURE.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Only behind a proxy that sets X-Forwarded-Proto itself (and drops a client's): otherwise
# any client could claim its plain HTTP request was HTTPS.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False) else None
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Django's defaults, stated so that a reader (and a test) sees them.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# The admin's login page: after too many failed logins for one username from one address,
# django-axes refuses that pair (429) for a while, even with the right password.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env_duration("ADMIN_LOGIN_COOLOFF", default="15m")
# A username tried from one client address: guessing one account's password is slow, and
# behind a proxy (one address for everyone) nobody else's login is locked.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client's address as the rate limits find it (API_NUM_PROXIES), not the proxy's.
AXES_CLIENT_IP_CALLABLE = "executions.api.throttling.client_address"
AXES_RESET_ON_SUCCESS = True

# --- Executions ------------------------------------------------------------------------
# How many rows one statement of a bulk status change touches (admin actions, cleanup, the
# purge). A trade: on SQLite other writers wait for one batch, and smaller batches cost more
# commits (the measurements behind the default: docs/performance.md, Cleanup, "Fewer commits").
EXECUTIONS_BULK_BATCH_SIZE = env.int("EXECUTIONS_BULK_BATCH_SIZE", default=5000)

# A running execution with no sign of life (heartbeat, else creation) for longer than this
# is stale: `?stale=true` lists it, the cleanup interrupts it. Duration text: 90s, 30m, 6h, 2d.
EXECUTIONS_STALE_AFTER = env_duration("EXECUTIONS_STALE_AFTER", default="30m")

# --- Email ---------------------------------------------------------------------------
# Notifications to email endpoints (and the owner of an endpoint disabled after failing) go
# through Django's SMTP backend with these. Port 587 with EMAIL_USE_TLS=true (STARTTLS) is the
# usual submission setup; EMAIL_USE_SSL=true is TLS from the first byte (port 465).
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL: set one of them, not both")
# Django's default is no timeout at all: an SMTP server that stops answering would hold a
# delivery for ever.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="executions@localhost")

# --- Worker (manage.py run_worker) ---------------------------------------------------------
# The longest the worker sleeps between two looks at what is due, in seconds: a deadline or
# a monitor due at any moment is acted on within this (plus one sweep), so 1 s keeps the 2 s
# promise (docs/operations.md, "The worker").
WORKER_IDLE_INTERVAL = env.float("WORKER_IDLE_INTERVAL", default=1.0)
# Rows per transaction of the worker's tasks: small enough that a SIGTERM waits for at most
# one (and that other writers wait on SQLite's write lock for little), large enough to catch
# up quickly after a long stop.
WORKER_BATCH_SIZE = env.int("WORKER_BATCH_SIZE", default=1000)

# --- Notifications (executions/notifications/) ----------------------------------------------
# Where users reach this service: the links in notifications (to an execution, its history,
# the admin page) start with it.
EXECUTIONS_PUBLIC_URL = env.str("EXECUTIONS_PUBLIC_URL", default="http://127.0.0.1:8000")
# Webhooks and Slack go only to public addresses (loopback, private, link-local, metadata...
# refused, on the address actually connected to: docs/security.md); true lets them reach this
# machine and its network, for receivers run there (and the tests' own, on 127.0.0.1).
NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = env.bool("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", default=False)
# How long a worker's claim on a message lasts: a worker killed mid-send leaves its messages
# to be sent again after this. Longer than a send can take (15 s timeouts).
NOTIFICATIONS_CLAIM_LEASE = env_duration("NOTIFICATIONS_CLAIM_LEASE", default="60s")
# Delivered and given-up messages, with their delivery log, are kept this long after they
# finished; the purge (manage.py purge_executions) deletes older ones.
NOTIFICATIONS_KEPT_FOR = env_duration("NOTIFICATIONS_KEPT_FOR", default="30d")

# --- Metrics ---------------------------------------------------------------------------
# GET /metrics (Prometheus) answers only `Authorization: Bearer <METRICS_TOKEN>`; without a
# token the endpoint is off (404). Several worker processes: see PROMETHEUS_MULTIPROC_DIR in
# docs/operations.md.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Where every process (the web's, the worker, the commands) counts for /metrics:
# PROMETHEUS_MULTIPROC_DIR, by default var/metrics (executions/metrics_files.py). Settled here,
# before anything imports prometheus_client, which reads it once, when first imported.
METRICS_FOLDER = configured_folder()
