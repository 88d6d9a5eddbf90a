"""What the admin's pages share: how a time and a JSON value are shown, and a read-only
table of a record's history."""

import json
from datetime import UTC

from django.contrib import admin
from django.utils.html import format_html


def utc_text(moment):
    """2026-11-29 08:27:13 UTC: seconds and the zone, which Django's locale format leaves out."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value):
    if value is None:
        return "-"
    return format_html(
        '<pre style="margin: 0; white-space: pre-wrap">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


class ReadOnlyTableInline(admin.TabularInline):
    """A record's history as a plain read-only table (`fields`, all read-only), newest first
    by the subclass's `ordering`: nothing to add, change or delete from the page."""

    extra = 0
    can_delete = False
    show_change_link = False
    # Django's tabular inline heads every row with the record's str() (a UUID or an id), a
    # line of noise per row here.
    template = "admin/executions/execution/status_change_inline.html"

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
