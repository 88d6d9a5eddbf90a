"""Settings come from the environment, and refuse to run production without a secret."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

PROJECT = Path(__file__).resolve().parent.parent


def read_settings(expression: str, **env) -> subprocess.CompletedProcess:
    """Evaluate `expression` against config.settings in a fresh process with `env`."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "NOTIFICATIONS_"))
    }
    # DJANGO_ENV_FILE="": never the developer's .env (tests/test_manage.py covers reading one).
    return subprocess.run(
        [sys.executable, "-c", f"from config import settings; print({expression})"],
        cwd=PROJECT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret():
    result = read_settings("settings.SECRET_KEY")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_secret_and_hosts_come_from_the_environment():
    result = read_settings(
        "settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG",
        DJANGO_SECRET_KEY="s3cret",
        DJANGO_ALLOWED_HOSTS="api.example.com,.internal",
    )
    assert result.stdout.strip() == "s3cret ['api.example.com', '.internal'] False"


def test_database_url_selects_postgresql():
    result = read_settings(
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME']",
        DJANGO_SECRET_KEY="x",
        DATABASE_URL="postgres://u:p@db.example:5432/runs",
    )
    assert result.stdout.strip() == "executions.db.postgresql runs"


def test_default_database_is_sqlite_in_var():
    result = read_settings("settings.DATABASES['default']['NAME']", DJANGO_SECRET_KEY="x")
    assert result.stdout.strip() == str(PROJECT / "var" / "db.sqlite3")


def test_connections_are_persistent_and_health_checked():
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_immediate_transactions():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: WAL and busy timeout are SQLite settings")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == settings.DATABASES["default"]["OPTIONS"]["timeout"] * 1000
    assert connection.transaction_mode == "IMMEDIATE"


@pytest.mark.parametrize(
    "cache_url, expected_options",
    [
        ("redis://redis.internal:6379/0", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}),
        (
            "redis://redis.internal:6379/0?socket_timeout=2",
            {"socket_connect_timeout": 0.5, "socket_timeout": 2},
        ),
    ],
)
def test_a_redis_cache_url_uses_djangos_redis_backend_with_timeouts(cache_url, expected_options):
    result = read_settings("settings.CACHES['default']", DJANGO_SECRET_KEY="s3cret", CACHE_URL=cache_url)
    assert result.returncode == 0, result.stderr
    cache = ast.literal_eval(result.stdout.strip())
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://redis.internal:6379/0"
    assert cache["OPTIONS"] == expected_options


def test_metrics_are_off_without_a_token():
    assert read_settings("repr(settings.METRICS_TOKEN)", DJANGO_SECRET_KEY="s3cret").stdout.strip() == "''"


def test_smtp_comes_from_the_environment():
    result = read_settings(
        "settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD,"
        " settings.EMAIL_USE_TLS, settings.DEFAULT_FROM_EMAIL, settings.EMAIL_TIMEOUT",
        DJANGO_SECRET_KEY="x",
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="alerts",
        EMAIL_HOST_PASSWORD="pw",
        EMAIL_USE_TLS="true",
        DEFAULT_FROM_EMAIL="Executions <alerts@example.com>",
    )
    assert result.stdout.strip() == ("smtp.example.com 587 alerts pw True Executions <alerts@example.com> 15")


def test_smtp_refuses_tls_and_ssl_at_once():
    result = read_settings("settings.EMAIL_HOST", DJANGO_SECRET_KEY="x", EMAIL_USE_TLS="1", EMAIL_USE_SSL="1")
    assert result.returncode != 0
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL" in result.stderr


def test_notifications_go_only_to_public_addresses_unless_the_environment_says_otherwise():
    defaults = read_settings(
        "settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS, settings.NOTIFICATIONS_CLAIM_LEASE,"
        " settings.NOTIFICATIONS_KEPT_FOR, settings.EXECUTIONS_PUBLIC_URL",
        DJANGO_SECRET_KEY="x",
    )
    assert defaults.stdout.strip() == "False 0:01:00 30 days, 0:00:00 http://127.0.0.1:8000"
    given = read_settings(
        "settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS, settings.NOTIFICATIONS_CLAIM_LEASE,"
        " settings.NOTIFICATIONS_KEPT_FOR, settings.EXECUTIONS_PUBLIC_URL",
        DJANGO_SECRET_KEY="x",
        NOTIFICATIONS_ALLOW_PRIVATE_TARGETS="true",
        NOTIFICATIONS_CLAIM_LEASE="90s",
        NOTIFICATIONS_KEPT_FOR="7d",
        EXECUTIONS_PUBLIC_URL="https://runs.example.com",
    )
    assert given.stdout.strip() == "True 0:01:30 7 days, 0:00:00 https://runs.example.com"


def test_a_bad_claim_lease_stops_the_settings_with_its_name():
    result = read_settings(
        "settings.NOTIFICATIONS_CLAIM_LEASE", DJANGO_SECRET_KEY="x", NOTIFICATIONS_CLAIM_LEASE="soon"
    )
    assert result.returncode != 0 and "NOTIFICATIONS_CLAIM_LEASE" in result.stderr
