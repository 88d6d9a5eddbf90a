"""The operators' view of monitors: a list with each monitor's state in colour and its last
20 runs as a strip of coloured marks (oldest on the left, as time reads), pause and resume
actions, and a page per monitor with its recent runs and its state history.

Monitors are made, changed and deleted through the API; here they are watched, paused and
resumed (through the same service, channel "admin", the operator as actor). Without
`manage_all_executions` a staff user sees their own monitors only, as in the API."""

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.utils.html import format_html, format_html_join

from ..models import ChangeChannel, ExecutionStatus, Monitor, MonitorState
from ..monitors.selectors import monitor_last_runs, monitor_state_changes, monitors_visible_to
from ..monitors.services import Actor, monitor_update
from .executions import STATUS_COLOURS
from .shared import utc_text

STATE_COLOURS = {
    MonitorState.NEW: "#546e7a",
    MonitorState.UP: "#2e7d32",
    MonitorState.DOWN: "#c62828",
    MonitorState.PAUSED: "#9e9e9e",
}
RUNS_IN_STRIP = 20
RUNS_ON_PAGE = 50
CHANGES_ON_PAGE = 100


class MonitorChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # The strips of the whole page in one query, not one per row.
        rows = list(self.result_list)
        runs = monitor_last_runs([monitor.pk for monitor in rows], RUNS_IN_STRIP)
        for monitor in rows:
            monitor.strip_runs = runs[monitor.pk]


def _run_mark(run):
    return format_html(
        '<span class="monitor-run monitor-run-{}" title="{} {}" style="background: {}"></span>',
        run.status,
        utc_text(run.created_at),
        run.get_status_display(),
        STATUS_COLOURS.get(run.status, "#bdbdbd"),
    )


@admin.register(Monitor)
class MonitorAdmin(admin.ModelAdmin):
    list_display = ["name", "state_badge", "owner_name", "schedule", "late", "last_runs"]
    list_filter = ["state"]
    list_select_related = ["owner"]
    search_fields = ["^name"]
    ordering = ["name", "id"]
    list_per_page = 100
    actions = ["pause_selected", "resume_selected"]
    fields = [
        "name",
        "state_badge",
        "owner_name",
        "schedule",
        "timezone",
        "grace_seconds",
        "max_runtime_seconds",
        "next_due",
        "late",
        "created",
        "recent_runs",
        "state_history",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["executions/admin.css"]}

    def get_queryset(self, request):
        return monitors_visible_to(request.user)

    def get_changelist(self, request, **kwargs):
        return MonitorChangeList

    # --- columns -----------------------------------------------------------------------
    @admin.display(description="state", ordering="state")
    def state_badge(self, monitor):
        reason = f" ({monitor.state_reason})" if monitor.state_reason else ""
        return format_html(
            '<strong class="monitor-state monitor-state-{}" style="color: {}">{}{}</strong>',
            monitor.state,
            STATE_COLOURS[monitor.state],
            monitor.get_state_display(),
            reason,
        )

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, monitor):
        return monitor.owner.get_username()

    @admin.display(description="down if no run starts by", ordering="late_after")
    def late(self, monitor):
        return utc_text(monitor.late_after)

    @admin.display(description="next run due at")
    def next_due(self, monitor):
        return utc_text(monitor.next_due_at)

    @admin.display(description="created at")
    def created(self, monitor):
        return utc_text(monitor.created_at)

    @admin.display(description=f"last {RUNS_IN_STRIP} runs")
    def last_runs(self, monitor):
        runs = getattr(monitor, "strip_runs", None)
        if runs is None:
            runs = monitor_last_runs([monitor.pk], RUNS_IN_STRIP)[monitor.pk]
        if not runs:
            return "no runs yet"
        marks = format_html_join("", "{}", ((_run_mark(run),) for run in reversed(runs)))
        return format_html('<span class="monitor-strip">{}</span>', marks)

    @admin.display(description="recent runs")
    def recent_runs(self, monitor):
        runs = monitor_last_runs([monitor.pk], RUNS_ON_PAGE)[monitor.pk]
        if not runs:
            return "no runs yet"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    f"../../../execution/{run.pk}/change/",
                    str(run.pk)[:8],
                    _run_mark(run),
                    utc_text(run.created_at),
                    utc_text(run.finished_at),
                )
                for run in runs
            ),
        )
        return format_html(
            '<table class="monitor-runs"><thead><tr><th>run</th><th>status</th><th>started</th>'
            "<th>finished</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="state history (newest first)")
    def state_history(self, monitor):
        changes = list(monitor_state_changes(monitor).order_by("-id")[:CHANGES_ON_PAGE])
        if not changes:
            return "no changes yet"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    utc_text(change.created_at),
                    change.previous_state,
                    change.new_state,
                    change.reason or "",
                    str(change.execution_id)[:8] if change.execution_id else "",
                    change.actor_username or "system",
                    change.channel,
                )
                for change in changes
            ),
        )
        return format_html(
            '<table class="monitor-history"><thead><tr><th>changed at</th><th>from</th><th>to</th>'
            "<th>reason</th><th>run</th><th>actor</th><th>channel</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    # --- read-only pages; pause and resume only ------------------------------------------
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Pause selected monitors", permissions=["change"])
    def pause_selected(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume selected monitors", permissions=["change"])
    def resume_selected(self, request, queryset):
        self._set_paused(request, queryset, False)

    def _set_paused(self, request, queryset, paused: bool):
        actor = Actor(request.user, ChangeChannel.ADMIN, getattr(request, "correlation_id", ""))
        changed = 0
        for monitor_id, state in (
            self.get_queryset(request).filter(pk__in=queryset.values("pk")).values_list("pk", "state")
        ):
            if (state == MonitorState.PAUSED) != paused:
                monitor_update(monitor_id=monitor_id, changes={"paused": paused}, actor=actor)
                changed += 1
        monitors = f"{changed} monitor{'s' if changed != 1 else ''}"
        self.message_user(request, f"{'Paused' if paused else 'Resumed'} {monitors}.", messages.SUCCESS)


assert set(STATUS_COLOURS) == set(ExecutionStatus.values)
