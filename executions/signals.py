"""Signals integrators connect to."""

from django.dispatch import Signal

# Sent once per status change, after the transaction that made it commits (never for a
# change that rolled back). Keyword arguments: execution_id, previous_status, new_status,
# error_info, actor (user or None), channel ("api", "admin", "command"), correlation_id.
execution_status_changed = Signal()
