"""The operators' view of executions. Status changes only through the actions, which call the
same bulk service as the cleanup command (channel "admin", the operator as actor); every form
here is read-only, so nothing can be typed and saved around the rule.

Times are shown in UTC with seconds, whatever the server's time zone, as the API gives them.
The audit trail is the status history on each execution's page, for every channel (API,
admin, cleanup); Django's own "History" (admin log entries) is left out rather than kept as a
second, admin-only and mostly empty record, and its URL leads to the execution's page.

Permissions: `view_execution` (or `change_execution`) to see the list and the pages;
`change_execution` to see and run the three actions. Without `manage_all_executions` a staff
user sees and acts on their own executions only, as in the API. Executions are neither added
nor deleted here: workers create them through the API, and their audit records protect them.
"""

import json
import uuid
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from ..durations import format_duration, parse_duration
from ..models import ApiToken, ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from ..selectors import executions_stale, executions_visible_to
from ..services import execution_change_status_bulk
from ..tokens import token_save_new, tokens_revoke
from .shared import ReadOnlyTableInline, pretty_json, utc_text

STATUS_COLOURS = {
    ExecutionStatus.RUNNING: "#1565c0",
    ExecutionStatus.COMPLETED: "#2e7d32",
    ExecutionStatus.FAILED: "#c62828",
    ExecutionStatus.CANCELLED: "#616161",
    ExecutionStatus.INTERRUPTED: "#ef6c00",
}
# What an operator is told after an action, by the status the executions moved to.
ACTION_DONE = {
    ExecutionStatus.CANCELLED: "Cancelled {count}",
    ExecutionStatus.COMPLETED: "Marked {count} as completed",
    ExecutionStatus.FAILED: "Marked {count} as failed",
}
# Below this many rows an exact count is cheap; above it a list shows PostgreSQL's estimate.
EXACT_COUNT_UP_TO = 100_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except on PostgreSQL when the planner expects more than
    EXACT_COUNT_UP_TO rows: there COUNT(*) would visit each of them on every page view, and
    the planner's estimate (one EXPLAIN, from the table's statistics) is enough."""

    @cached_property
    def count(self):
        if connection.vendor == "postgresql":
            plan = json.loads(self.object_list.order_by().explain(format="json"))
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            if estimate > EXACT_COUNT_UP_TO:
                return estimate
        return super().count


# The admin's "View site" link: this service has no site of its own, its API docs are the
# nearest thing (Django's default, "/", is a 404 here).
admin.site.site_url = reverse_lazy("swagger-ui")
# Without the navigation sidebar (the same links as the index page) the list of executions,
# its seven columns and its filters fit side by side on a 1400 px wide screen.
admin.site.enable_nav_sidebar = False

# What the list and the "mark failed" page show of a row never includes its JSON, which may
# be large (docs/api.md: limits): 100 rows of it would cost a worker hundreds of megabytes.
LARGE_FIELDS = ["metadata", "error_info"]


class ExecutionChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*LARGE_FIELDS)


class StaleFilter(admin.SimpleListFilter):
    title = "stale"
    parameter_name = "stale"

    def lookups(self, request, model_admin):
        after = format_duration(settings.EXECUTIONS_STALE_AFTER)
        return [("yes", f"Stale (running, no sign of life for {after})")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return executions_stale(queryset, settings.EXECUTIONS_STALE_AFTER)
        return queryset


class StatusChangeInline(ReadOnlyTableInline):
    """The audit trail of the execution, newest first, read-only."""

    model = ExecutionStatusChange
    verbose_name = "status change"
    verbose_name_plural = "Status history (audit trail)"
    fields = ["changed_at", "previous_status", "new_status", "channel", "who", "correlation_id", "why"]
    ordering = ["-created_at", "-id"]

    @admin.display(description="changed at")
    def changed_at(self, change):
        return utc_text(change.created_at)

    @admin.display(description="actor")
    def who(self, change):
        return change.actor_username or "system"

    @admin.display(description="error info")
    def why(self, change):
        return pretty_json(change.error_info)

    # Whoever may see an execution may see its history.
    def has_view_permission(self, request, obj=None):
        return _may_view_executions(request)


class FailureReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='Stored in error_info as {"reason": ...} on every execution that becomes failed.',
    )


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "name",
        "status_badge",
        "owner",
        "created",
        "last_heartbeat",
        "deadline",
        "age_or_duration",
    ]
    list_display_links = ["short_id", "name"]
    list_filter = ["status", StaleFilter, ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["created_by"]
    # Names by their start (case-insensitive), which an index answers on a million rows;
    # "contains" scanned the whole table (migration 0007 has the indexes).
    search_fields = ["^name"]
    search_help_text = "The start of the name, or of the id (the whole id or its first characters)."
    # No date drill-down: its SELECT DISTINCT of every creation day scanned the whole table on
    # each page view. The "created at" filter offers today, past 7 days, this month, this year.
    ordering = ["-created_at", "-id"]
    # A million rows: no second COUNT(*) of the whole table for "N total", no exact count of
    # an unfiltered list on PostgreSQL.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    actions = ["cancel_selected", "mark_failed", "mark_completed"]
    inlines = [StatusChangeInline]
    fields = [
        "id",
        "name",
        "status_badge",
        "owner",
        "created",
        "updated",
        "finished",
        "last_heartbeat",
        "deadline",
        "age_or_duration",
        "error_info_pretty",
        "metadata_pretty",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["executions/admin.css"]}

    def get_queryset(self, request):
        return executions_visible_to(request.user)

    def get_changelist(self, request, **kwargs):
        return ExecutionChangeList

    def changelist_view(self, request, extra_context=None):
        # PostgreSQL cannot compare text with NUL in it (DataError, a 500): a filter or search
        # value with NUL is refused as Django refuses any invalid filter, with the "?e=1" page.
        if any("\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values):
            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        # Django's "Select execution to change": nothing here is changed, executions are
        # looked at and acted on.
        return super().changelist_view(request, {"title": "Executions", **(extra_context or {})})

    def history_view(self, request, object_id, extra_context=None):
        # The audit trail is on the execution's page (see the module's docstring).
        return HttpResponseRedirect(reverse("admin:executions_execution_change", args=[object_id]))

    # --- list columns ------------------------------------------------------------------
    @admin.display(description="id", ordering="id")
    def short_id(self, execution):
        # The start, which the search takes, and the end: ids are time-ordered (UUIDv7), so
        # executions made within a minute share their first 8 characters; the end is random.
        text = str(execution.id)
        return f"{text[:8]}…{text[-4:]}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, execution):
        return format_html(
            '<strong class="execution-status execution-status-{}" style="color: {}">{}</strong>',
            execution.status,
            STATUS_COLOURS.get(execution.status, "inherit"),
            execution.get_status_display(),
        )

    @admin.display(description="owner", ordering="created_by__username")
    def owner(self, execution):
        return execution.created_by.get_username() if execution.created_by else "system"

    @admin.display(description="created at", ordering="created_at")
    def created(self, execution):
        return utc_text(execution.created_at)

    @admin.display(description="last heartbeat at", ordering="last_heartbeat_at")
    def last_heartbeat(self, execution):
        return utc_text(execution.last_heartbeat_at)

    @admin.display(description="deadline")
    def deadline(self, execution):
        """When the worker fails it if it still runs, and the max runtime it comes from."""
        if execution.deadline_at is None:
            return "-"
        runtime = _short_timedelta(timedelta(seconds=execution.max_runtime_seconds))
        return f"{utc_text(execution.deadline_at)} (max runtime {runtime})"

    @admin.display(description="updated at")
    def updated(self, execution):
        return utc_text(execution.updated_at)

    @admin.display(description="finished at")
    def finished(self, execution):
        return utc_text(execution.finished_at)

    @admin.display(description="age / duration")
    def age_or_duration(self, execution):
        """How long it ran (finished) or has been running (still running)."""
        if execution.finished_at:
            return f"ran {_short_timedelta(execution.finished_at - execution.created_at)}"
        return f"running for {_short_timedelta(timezone.now() - execution.created_at)}"

    @admin.display(description="error info")
    def error_info_pretty(self, execution):
        return pretty_json(execution.error_info)

    @admin.display(description="metadata")
    def metadata_pretty(self, execution):
        return pretty_json(execution.metadata)

    # --- search: name, or the whole id or its first characters -----------------------
    def get_search_results(self, request, queryset, search_term):
        by_name, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        id_range = _id_prefix_range(search_term)
        if id_range is None:
            return by_name, may_have_duplicates
        return by_name | queryset.filter(pk__range=id_range), may_have_duplicates

    # --- permissions: the change page is a view page; the actions need "change" -------
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # For one execution the answer is no, so its page is read-only with no Save button;
        # for the list (obj=None) it is the real permission, which the actions require.
        return obj is None and super().has_change_permission(request)

    # --- actions -----------------------------------------------------------------------
    def response_action(self, request, queryset):
        # A posted id that is not a UUID selects nothing, instead of failing the request.
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        valid = [value for value in selected if _is_uuid(value)]
        if len(valid) != len(selected):
            request.POST = request.POST.copy()
            request.POST.setlist(helpers.ACTION_CHECKBOX_NAME, valid)
        return super().response_action(request, queryset)

    @admin.action(description="Cancel selected executions", permissions=["change"])
    def cancel_selected(self, request, queryset):
        self._change_status(request, queryset, ExecutionStatus.CANCELLED)

    @admin.action(description="Mark selected executions as completed", permissions=["change"])
    def mark_completed(self, request, queryset):
        self._change_status(request, queryset, ExecutionStatus.COMPLETED)

    @admin.action(description="Mark selected executions as failed…", permissions=["change"])
    def mark_failed(self, request, queryset):
        """First shows a form asking why; its POST comes back here with the reason."""
        form = FailureReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._change_status(
                request, queryset, ExecutionStatus.FAILED, error_info={"reason": form.cleaned_data["reason"]}
            )
            return None
        selected_ids = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        select_across = request.POST.get("select_across", "0")
        context = {
            **self.admin_site.each_context(request),
            "title": "Mark executions as failed",
            "opts": self.model._meta,
            "form": form,
            "action": "mark_failed",
            "selected_ids": selected_ids,
            "select_across": select_across,
            "sample": queryset.defer(*LARGE_FIELDS).order_by("-created_at", "-id")[:20],
            "count": queryset.count() if select_across == "1" else len(selected_ids),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/executions/execution/mark_failed.html", context)

    def _change_status(self, request, queryset, status, error_info=None):
        # The selection (a "select all" may be a million rows) is changed in batches, within
        # what this user may act on, re-checked on the locked rows.
        result = execution_change_status_bulk(
            executions=self.get_queryset(request).filter(pk__in=queryset.values("pk")),
            status=status,
            channel=ChangeChannel.ADMIN,
            actor=request.user,
            error_info=error_info,
        )
        changed = ACTION_DONE[status].format(
            count=f"{result.changed} execution{'s' if result.changed != 1 else ''}"
        )
        if result.skipped:
            verb = "was" if result.skipped == 1 else "were"
            self.message_user(
                request,
                f"{changed}; {result.skipped} skipped because {'it' if result.skipped == 1 else 'they'} "
                f"{verb} no longer running.",
                messages.WARNING,
            )
        else:
            self.message_user(request, f"{changed}.", messages.SUCCESS)


def _may_view_executions(request):
    return request.user.has_perm("executions.view_execution") or request.user.has_perm(
        "executions.change_execution"
    )


def _short_timedelta(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d", f"{hours}h", f"{minutes}m", f"{seconds}s"]
    values = [days, hours, minutes, seconds]
    first = next((i for i, value in enumerate(values) if value), 3)
    return " ".join(parts[first : first + 2])


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _id_prefix_range(term: str):
    """The ids that start with `term` ("3f2a9c01", or a whole id, dashes or not), as a range
    of the primary key, which its index answers; None when `term` cannot start an id."""
    hex_digits = term.strip().lower().replace("-", "")
    if not 4 <= len(hex_digits) <= 32 or any(c not in "0123456789abcdef" for c in hex_digits):
        return None
    return uuid.UUID(hex_digits.ljust(32, "0")), uuid.UUID(hex_digits.ljust(32, "f"))


class ApiTokenCreationForm(forms.ModelForm):
    expires_in = forms.CharField(
        required=False,
        max_length=20,
        help_text="Refuse the key after this long: 90d, 12w, 6h... Empty: never.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]

    def clean_expires_in(self):
        text = self.cleaned_data["expires_in"].strip()
        if not text:
            return None
        try:
            return parse_duration(text)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Lists tokens and revokes them; never shows a key, which only its creator ever sees.

    Only superusers make tokens here: a token acts as its user, so making one for someone
    else is acting as them. Revoking needs `change_apitoken`; a revoked token is kept (its
    row says who had it and when it was revoked), so nothing is deleted here."""

    shown_fields = [
        "prefix",
        "name",
        "owner",
        "state",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_display = shown_fields
    list_display_links = ["prefix", "name"]
    list_select_related = ["user"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    search_help_text = "Name, key prefix (its first characters) or username."
    ordering = ["-created_at", "-id"]
    actions = ["revoke_selected"]
    autocomplete_fields = ["user"]

    @admin.display(description="owner", ordering="user__username")
    def owner(self, token):
        return token.user.get_username()

    @admin.display(description="state")
    def state(self, token):
        """What the token's key gets now: the reason it is refused, if it is."""
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "active"

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenCreationForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "name", "expires_in"] if obj is None else self.shown_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.shown_fields

    def save_model(self, request, obj, form, change):
        # Only an addition reaches here: a token's own page is read-only.
        obj.key_shown_once = token_save_new(obj, form.cleaned_data["expires_in"])

    def response_add(self, request, obj, post_url_continue=None):
        # The key is on this one page and nowhere else: not in a redirect, a message (which
        # would travel in a cookie or sit in the session table) or a log.
        context = {
            **self.admin_site.each_context(request),
            "title": "The new token's key",
            "opts": self.model._meta,
            "token": obj,
            "key": obj.key_shown_once,
        }
        return TemplateResponse(request, "admin/executions/apitoken/key_once.html", context)

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        # The list (obj=None) needs the real permission for the revoke action; a token's page
        # is read-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = tokens_revoke(queryset)
        tokens = f"{revoked} token{'s' if revoked != 1 else ''}"
        self.message_user(request, f"{tokens} revoked; their keys are refused from now on.", messages.SUCCESS)
