"""The operators' view of notifications: endpoints (enable, disable, rotate the secret, send a
test event) and deliveries (every message, its state and attempts; replay).

Scoped as the API scopes them (notifications/selectors.py): a staff user without
manage_all_executions sees and acts on their own endpoints and their deliveries only (an
action's selection comes from get_queryset, "select all" included).
`view_notificationendpoint` / `view_notificationmessage` show the pages; the `change_`
permissions the actions. Pages are read-only: endpoints are made through the API, and what
changes them goes through the same services as the API."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from ..models import DeliveryAttempt, DisabledReason, MessageState, NotificationEndpoint, NotificationMessage
from ..notifications.selectors import notification_endpoints_visible_to
from ..notifications.services import (
    notification_endpoint_rotate_secret,
    notification_endpoint_send_test,
    notification_endpoint_set_enabled,
    notification_message_replay,
)
from .shared import ReadOnlyTableInline, pretty_json, utc_text

# Disabled by the service (the receiver is gone, or every delivery failed for 5 days): what an
# operator must notice, in red; disabled by someone on purpose, in grey.
SERVICE_DISABLED = (DisabledReason.GONE, DisabledReason.FAILING)
STATE_COLOURS = {
    MessageState.PENDING: "#1565c0",
    MessageState.DELIVERED: "#2e7d32",
    MessageState.FAILED: "#c62828",
}


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


class EndpointStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("enabled", "Enabled"),
            ("failing", "Enabled, failing"),
            ("service_disabled", "Disabled by the service (gone or failing)"),
            ("owner_disabled", "Disabled by its owner or an operator"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "enabled":
                return queryset.filter(enabled=True)
            case "failing":
                return queryset.filter(enabled=True, failing_since__isnull=False)
            case "service_disabled":
                return queryset.filter(enabled=False, disabled_reason__in=SERVICE_DISABLED)
            case "owner_disabled":
                return queryset.filter(enabled=False, disabled_reason=DisabledReason.OWNER)
        return queryset


@admin.register(NotificationEndpoint)
class NotificationEndpointAdmin(admin.ModelAdmin):
    list_display = ["target", "kind", "owner_name", "event_list", "state", "created"]
    list_display_links = ["target"]
    list_filter = [EndpointStateFilter, "kind"]
    list_select_related = ["owner"]
    search_fields = ["description", "url", "owner__username"]
    search_help_text = "Description, URL or owner's username."
    ordering = ["-created_at", "-id"]
    actions = ["send_test", "rotate_secret", "disable_selected", "enable_selected"]
    fields = [
        "id",
        "kind",
        "target",
        "description",
        "owner_name",
        "event_list",
        "name_prefix",
        "state",
        "secret_rotation",
        "created",
        "updated",
        "deliveries_link",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["executions/admin.css"]}

    def get_queryset(self, request):
        return notification_endpoints_visible_to(request.user)

    def changelist_view(self, request, extra_context=None):
        # Endpoints the service disabled stand out: a warning above the list, whatever page.
        stopped = self.get_queryset(request).filter(enabled=False, disabled_reason__in=SERVICE_DISABLED)
        count = stopped.count()
        if count and request.method == "GET":
            self.message_user(
                request,
                f"{_plural(count, 'endpoint')} disabled by the service after failing (or answered 410 "
                "Gone): nothing is sent to them until they are enabled again.",
                messages.WARNING,
            )
        return super().changelist_view(request, {"title": "Notification endpoints", **(extra_context or {})})

    # --- columns ------------------------------------------------------------------------
    @admin.display(description="target")
    def target(self, endpoint):
        return endpoint.url or ", ".join(endpoint.emails)

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, endpoint):
        return endpoint.owner.get_username()

    @admin.display(description="events")
    def event_list(self, endpoint):
        return ", ".join(endpoint.events)

    @admin.display(description="state", ordering="enabled")
    def state(self, endpoint):
        if endpoint.enabled:
            if endpoint.failing_since:
                return format_html(
                    '<strong class="endpoint-state endpoint-failing" style="color: #ef6c00">'
                    "enabled, failing since {}</strong>",
                    utc_text(endpoint.failing_since),
                )
            return format_html(
                '<span class="endpoint-state endpoint-enabled" style="color: {}">enabled</span>', "#2e7d32"
            )
        if endpoint.disabled_reason in SERVICE_DISABLED:
            return format_html(
                '<strong class="endpoint-state endpoint-service-disabled" style="color: #c62828">'
                "disabled: {} (since {})</strong>",
                endpoint.get_disabled_reason_display(),
                utc_text(endpoint.disabled_at),
            )
        return format_html(
            '<span class="endpoint-state endpoint-disabled" style="color: #616161">'
            "disabled (since {})</span>",
            utc_text(endpoint.disabled_at),
        )

    @admin.display(description="secret")
    def secret_rotation(self, endpoint):
        expires = endpoint.previous_secret_expires_at
        if endpoint.previous_secret and expires and expires > timezone.now():
            return f"rotated; the previous secret also signs until {utc_text(expires)}"
        return "one secret (shown once, when it was made or rotated)"

    @admin.display(description="created at", ordering="created_at")
    def created(self, endpoint):
        return utc_text(endpoint.created_at)

    @admin.display(description="updated at")
    def updated(self, endpoint):
        return utc_text(endpoint.updated_at)

    @admin.display(description="deliveries")
    def deliveries_link(self, endpoint):
        url = reverse("admin:executions_notificationmessage_changelist") + f"?endpoint={endpoint.pk}"
        return format_html('<a href="{}">Its deliveries</a>', url)

    # --- permissions: pages are read-only, the actions need "change" --------------------
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    # --- actions ------------------------------------------------------------------------
    @admin.action(description="Send a test event to selected endpoints", permissions=["change"])
    def send_test(self, request, queryset):
        endpoints = list(queryset)
        for endpoint in endpoints:
            notification_endpoint_send_test(endpoint)
        self.message_user(
            request,
            f"Queued a test event for {_plural(len(endpoints), 'endpoint')}; see their deliveries.",
            messages.SUCCESS,
        )

    @admin.action(description="Rotate the secret of selected endpoints…", permissions=["change"])
    def rotate_secret(self, request, queryset):
        """The new secrets on one page, this once (not in a message, which would travel in a
        cookie or sit in the session table; the admin's pages are never cached)."""
        rotated = [(endpoint, notification_endpoint_rotate_secret(endpoint)) for endpoint in queryset]
        context = {
            **self.admin_site.each_context(request),
            "title": "New signing secrets",
            "opts": self.model._meta,
            "rotated": rotated,
        }
        return TemplateResponse(request, "admin/executions/notificationendpoint/secret_once.html", context)

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable_selected(self, request, queryset):
        self._set_enabled(request, queryset, False)

    @admin.action(description="Enable selected endpoints (failures forgotten)", permissions=["change"])
    def enable_selected(self, request, queryset):
        self._set_enabled(request, queryset, True)

    def _set_enabled(self, request, queryset, enabled: bool):
        changed = 0
        for endpoint in queryset.filter(enabled=not enabled):
            notification_endpoint_set_enabled(endpoint, enabled)
            changed += 1
        verb = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{verb} {_plural(changed, 'endpoint')}.", messages.SUCCESS)


class DeliveryAttemptInline(ReadOnlyTableInline):
    """Every try to deliver the message, newest first, read-only."""

    model = DeliveryAttempt
    verbose_name = "attempt"
    verbose_name_plural = "Attempts (newest first)"
    empty_text = "No attempt yet."
    fields = ["when", "status_code", "latency", "succeeded", "error", "response_body"]
    ordering = ["-attempted_at", "-id"]

    @admin.display(description="attempted at")
    def when(self, attempt):
        return utc_text(attempt.attempted_at)

    @admin.display(description="latency")
    def latency(self, attempt):
        return f"{attempt.latency_ms} ms"

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("executions.view_notificationmessage") or request.user.has_perm(
            "executions.change_notificationmessage"
        )


class DeliveryEndpointFilter(admin.SimpleListFilter):
    """By endpoint: only the endpoints the user may see are offered (and taken)."""

    title = "endpoint"
    parameter_name = "endpoint"

    def lookups(self, request, model_admin):
        endpoints = notification_endpoints_visible_to(request.user).order_by("-created_at")[:50]
        return [(str(endpoint.pk), str(endpoint)) for endpoint in endpoints]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        try:
            return queryset.filter(endpoint_id=self.value())
        except ValidationError:  # not a UUID: no endpoint has it
            return queryset.none()


_last_attempt = DeliveryAttempt.objects.filter(message=OuterRef("pk")).order_by("-attempted_at", "-id")


@admin.register(NotificationMessage)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "webhook_id",
        "event_type",
        "endpoint_link",
        "state_badge",
        "attempts",
        "last_status",
        "last_latency",
        "created",
        "finished",
    ]
    list_filter = ["state", DeliveryEndpointFilter, "event_type"]
    list_select_related = ["endpoint"]
    search_fields = ["=webhook_id", "=subject_id"]
    search_help_text = "The whole webhook-id (msg_...), or the execution's or monitor's id."
    ordering = ["-id"]
    show_full_result_count = False
    list_per_page = 100
    actions = ["replay_selected"]
    inlines = [DeliveryAttemptInline]
    fields = [
        "webhook_id",
        "event_type",
        "endpoint_link",
        "subject_id",
        "state_badge",
        "attempts",
        "next_attempt",
        "occurred",
        "created",
        "finished",
        "data",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["executions/admin.css"]}

    def get_queryset(self, request):
        return (
            NotificationMessage.objects.filter(endpoint__in=notification_endpoints_visible_to(request.user))
            .defer("payload")
            .annotate(
                last_status_code=Subquery(_last_attempt.values("status_code")[:1]),
                last_latency_ms=Subquery(_last_attempt.values("latency_ms")[:1]),
                last_error=Subquery(_last_attempt.values("error")[:1]),
            )
        )

    def get_object(self, request, object_id, from_field=None):
        # The page shows the payload, which the list leaves out.
        message = super().get_object(request, object_id, from_field)
        if message is not None:
            message.refresh_from_db(fields=["payload"])
        return message

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Deliveries", **(extra_context or {})})

    @admin.display(description="endpoint")
    def endpoint_link(self, message):
        url = reverse("admin:executions_notificationendpoint_change", args=[message.endpoint_id])
        return format_html('<a href="{}">{}</a>', url, message.endpoint)

    @admin.display(description="state", ordering="state")
    def state_badge(self, message):
        return format_html(
            '<strong class="delivery-state delivery-state-{}" style="color: {}">{}</strong>',
            message.state,
            STATE_COLOURS.get(message.state, "inherit"),
            message.get_state_display(),
        )

    @admin.display(description="last status")
    def last_status(self, message):
        if message.last_status_code is not None:
            return message.last_status_code
        return message.last_error or "-"

    @admin.display(description="last latency")
    def last_latency(self, message):
        return "-" if message.last_latency_ms is None else f"{message.last_latency_ms} ms"

    @admin.display(description="next attempt at")
    def next_attempt(self, message):
        return utc_text(message.next_attempt_at) if message.state == MessageState.PENDING else "-"

    @admin.display(description="occurred at")
    def occurred(self, message):
        return utc_text(message.occurred_at)

    @admin.display(description="created at", ordering="created_at")
    def created(self, message):
        return utc_text(message.created_at)

    @admin.display(description="finished at")
    def finished(self, message):
        return utc_text(message.finished_at)

    @admin.display(description="data")
    def data(self, message):
        return pretty_json(message.payload)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Replay selected deliveries (send again)", permissions=["change"])
    def replay_selected(self, request, queryset):
        replayed = sum(notification_message_replay(message).replayed for message in queryset.iterator())
        self.message_user(
            request,
            f"{_plural(replayed, 'delivery', 'deliveries')} queued to be sent again"
            + ("; pending ones were left as they are." if replayed < queryset.count() else "."),
            messages.SUCCESS,
        )
