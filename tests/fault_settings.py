"""The production settings with tests/fault_urls.py's views added, for a server the tests
start in a process of its own (DJANGO_SETTINGS_MODULE=tests.fault_settings)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.fault_urls"
