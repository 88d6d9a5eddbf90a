"""What the admin's pages share: a read-only table of a record's history."""

from django.contrib import admin


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
