"""What a message says: the event's data, built from an audit record, kept under the size
limit, and the body that every transport starts from."""

import json
from datetime import datetime
from functools import cache

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from ..models import EventType

# A webhook body stays under this whatever the execution holds (Standard Webhooks and most
# receivers take far more, but a small body is cheap to sign, send, log and store).
MAX_BODY_BYTES = 20 * 1024
# The fields that can be large, in the order they are cut when the body would not fit.
TRIMMABLE_FIELDS = ("error_info", "metadata")

EVENT_OF_EXECUTION_STATUS = {
    "completed": EventType.EXECUTION_COMPLETED,
    "failed": EventType.EXECUTION_FAILED,
    "cancelled": EventType.EXECUTION_CANCELLED,
    "interrupted": EventType.EXECUTION_INTERRUPTED,
}


def public_url(path: str) -> str:
    """`path` on the service as its users reach it (EXECUTIONS_PUBLIC_URL)."""
    return settings.EXECUTIONS_PUBLIC_URL.rstrip("/") + path


# Any UUID: the paths are reversed once with it, then each link is the path with the id in it.
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


@cache
def _execution_paths() -> dict[str, str]:
    return {
        "execution": reverse("execution-detail", args=[_PLACEHOLDER_ID]),
        "history": reverse("execution-history", args=[_PLACEHOLDER_ID]),
        "admin": reverse("admin:executions_execution_change", args=[_PLACEHOLDER_ID]),
    }


def execution_links(execution_id) -> dict:
    """Where to see the execution: the API's record, its history, the admin page. (The
    fan-out makes one per change: reversing three URLs each time cost more than the rest.)"""
    execution_id = str(execution_id)
    return {
        name: public_url(path.replace(_PLACEHOLDER_ID, execution_id))
        for name, path in _execution_paths().items()
    }


def monitor_links(monitor_id) -> dict:
    links = {
        "monitor": public_url(reverse("monitor-detail", args=[monitor_id])),
        "history": public_url(reverse("monitor-history", args=[monitor_id])),
    }
    try:
        links["admin"] = public_url(reverse("admin:executions_monitor_change", args=[monitor_id]))
    except NoReverseMatch:
        pass  # no admin page for monitors in this installation
    return links


def monitor_event_data(
    *,
    monitor_id,
    name: str,
    owner: str | None,
    change_id: int,
    previous_state: str,
    current_state: str,
    reason: str | None,
    run_id,
    actor: str | None,
    channel: str,
    correlation_id: str,
    changed_at: datetime,
) -> dict:
    """The `data` of a monitor.* event: the monitor and its state change (from, to, why,
    the run that caused it, who or what, when)."""
    return {
        "id": str(monitor_id),
        "name": name,
        "owner": owner,
        "previous_state": previous_state,
        "current_state": current_state,
        "reason": reason,
        "run": str(run_id) if run_id else None,
        "actor": actor,
        "channel": channel,
        "correlation_id": correlation_id or None,
        "changed_at": changed_at.isoformat(),
        "change_id": change_id,
        "links": monitor_links(monitor_id),
        "truncated": [],
    }


def execution_event_data(
    *,
    execution_id,
    name: str,
    owner: str | None,
    metadata,
    change_id: int,
    previous_status: str,
    current_status: str,
    error_info,
    actor: str | None,
    channel: str,
    correlation_id: str,
    changed_at: datetime,
) -> dict:
    """The `data` of an execution.* event: the execution, and the change (who, through which
    channel, when, from what, to what, why), cut to fit (fit_in_body)."""
    return fit_in_body(
        {
            "id": str(execution_id),
            "name": name,
            "owner": owner,
            "previous_status": previous_status,
            "current_status": current_status,
            "error_info": error_info,
            "metadata": metadata,
            "actor": actor,
            "channel": channel,
            "correlation_id": correlation_id or None,
            "changed_at": changed_at.isoformat(),
            "change_id": change_id,
            "links": execution_links(execution_id),
            "truncated": [],
        }
    )


def body_bytes(event_type: str, occurred_at: datetime, data: dict) -> bytes:
    """The JSON body `{"type", "timestamp", "data"}`, compact and ASCII (any text the
    execution holds survives encoding, lone surrogates included)."""
    body = {"type": event_type, "timestamp": occurred_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


# Room for the envelope (type, the timestamp) around the data.
_ENVELOPE_BYTES = 128


def fit_in_body(data: dict) -> dict:
    """`data` with its large fields (TRIMMABLE_FIELDS, largest first) set to null and named
    in `truncated` until its body is under MAX_BODY_BYTES; the links lead to the full record."""

    def size(value) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=True))

    if size(data) + _ENVELOPE_BYTES <= MAX_BODY_BYTES:
        return data
    data = {**data, "truncated": list(data.get("truncated", []))}
    for field in sorted(TRIMMABLE_FIELDS, key=lambda name: size(data.get(name)), reverse=True):
        if data.get(field) is not None:
            data[field] = None
            data["truncated"].append(field)
        if size(data) + _ENVELOPE_BYTES <= MAX_BODY_BYTES:
            return data
    raise ValueError("an event's data does not fit in a body even without its large fields")
