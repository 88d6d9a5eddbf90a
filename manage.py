#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Read here, so that a bad setting is one line naming it, not a traceback (nor
        # Django's "Unknown command" for every command of the project).
        settings.INSTALLED_APPS
    except ImproperlyConfigured as error:
        sys.exit(f"Error: {error}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
