"""manage.py as a developer meets it in a terminal of its own: the development settings
scripts/serve.sh wrote to .env, a missing secret told in one line, and the README's commands
safe to run twice."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

PROJECT = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"


def manage(*args, **env):
    """`manage.py args` in a fresh terminal: nothing in its environment but PATH, HOME and `env`."""
    fresh = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=fresh,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env_file(tmp_path):
    """A .env as scripts/serve.sh writes it."""
    path = tmp_path / ".env"
    path.write_text("DJANGO_DEBUG=true\nDJANGO_SECRET_KEY=from-the-env-file\n")
    return str(path)


def test_without_a_secret_manage_py_says_how_to_fix_it_in_one_line():
    result = manage("rotate_token", "alice", DJANGO_ENV_FILE="")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "manage.py: DJANGO_SECRET_KEY is not set: for development run scripts/serve.sh once "
        "(it writes .env), in production set the DJANGO_SECRET_KEY environment variable.\n"
    )


def test_manage_py_reads_the_development_settings_from_the_env_file(env_file):
    result = manage("shell", "-v", "0", "-c", PRINT_SETTINGS, DJANGO_ENV_FILE=env_file)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "True from-the-env-file\n"


def test_the_environment_wins_over_the_env_file(env_file):
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        PRINT_SETTINGS,
        DJANGO_ENV_FILE=env_file,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="from-the-environment",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "False from-the-environment\n"


def test_the_env_file_is_the_checkout_s_own_unless_told_otherwise():
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.ENV_FILE)",
        DJANGO_SECRET_KEY="x",
    )

    assert result.stdout == f"{PROJECT / '.env'}\n"


def test_the_suite_reads_no_env_file(settings):
    # tests/settings.py says so before the settings load, for this process and every one it starts.
    assert (settings.ENV_FILE, os.environ["DJANGO_ENV_FILE"]) == ("", "")


def test_create_api_user_makes_a_plain_user_and_is_safe_to_run_again(db, capsys):
    call_command("create_api_user", "alice")
    call_command("create_api_user", "alice")

    assert capsys.readouterr().out == "Created user 'alice'.\nUser 'alice' exists already; left as it is.\n"
    alice = get_user_model().objects.get(username="alice")
    assert (alice.is_staff, alice.is_superuser, alice.has_usable_password()) == (False, False, False)
    assert not alice.user_permissions.exists()


@pytest.mark.parametrize("username", ["", "two words", "x" * 151])
def test_create_api_user_refuses_a_name_the_admin_would_refuse(db, username):
    with pytest.raises(CommandError, match="Username"):
        call_command("create_api_user", username)
    assert not get_user_model().objects.exists()


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    fresh = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [sys.executable, *command], cwd=PROJECT, env=fresh, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("database_url", "says"),
    [
        ("postgres://...", "DATABASE_URL names no database"),  # the README's line, copied as it was
        (
            "postgres://user:secret@db.example:notaport/executions",
            "DATABASE_URL is not a database URL this service takes",
        ),
        (
            "mysql://user:secret@db.example/executions",
            "DATABASE_URL is not a database URL this service takes",
        ),
        ("garbage", "DATABASE_URL is not a database URL this service takes"),
        ("postgres://user:secret@.../executions", "DATABASE_URL names no host"),
    ],
)
def test_a_malformed_database_url_is_one_line_that_shows_the_forms(database_url, says):
    result = manage("check", DJANGO_ENV_FILE="", DJANGO_SECRET_KEY="x", DATABASE_URL=database_url)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"manage.py: {says}"), result.stderr
    assert "postgres://user:password@host:5432/name" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "secret" not in result.stderr  # the URL, which may hold a password, is not repeated


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        (["-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--check-config"], "gunicorn: "),
        (["deploy/serve.py"], "deploy/serve.py: "),
    ],
)
def test_gunicorn_and_the_production_command_say_it_in_one_line_too(command, prefix):
    result = run(command, DJANGO_ENV_FILE="", DJANGO_SECRET_KEY="x", DATABASE_URL="postgres://...")

    assert result.returncode == 1
    assert result.stderr == (
        f"{prefix}DATABASE_URL names no database: postgres://user:password@host:5432/name, "
        "or sqlite:////absolute/path/db.sqlite3 (unset: SQLite in var/db.sqlite3)\n"
    )
