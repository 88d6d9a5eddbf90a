"""The admin site's pages, one module per concern; importing them registers them."""

from . import executions, monitors, notifications, users  # noqa: F401
