"""The example bodies docs/api.md shows for each event type are what the service builds: the
same fields, at every level, and the same type."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from executions.notifications.events import body_bytes, execution_event_data, monitor_event_data
from executions.notifications.services import notification_endpoint_send_test

from .factories import NotificationEndpointFactory

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
AT = datetime(2026, 12, 5, tzinfo=UTC)


def documented_bodies() -> dict[str, dict]:
    section = API_DOC.read_text().split("### Event types", 1)[1]
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    return {body["type"]: body for body in bodies}


def shape(value):
    """The keys of `value` at every level (lists by their first item), with the leaves' types."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def built(event_type: str, data: dict) -> dict:
    return json.loads(body_bytes(event_type, AT, data))


def test_every_event_type_has_an_example():
    assert set(documented_bodies()) == {"execution.failed", "monitor.down", "notification.test"}


def test_the_execution_example_is_what_the_service_builds(settings):
    settings.EXECUTIONS_PUBLIC_URL = "https://executions.example.com"
    data = execution_event_data(
        execution_id="01a245e4-985f-7d5b-88fd-3cb784f228de",
        name="nightly-report",
        owner="alice",
        metadata={"shard": 3},
        change_id=4812,
        previous_status="running",
        current_status="failed",
        error_info={"exit_code": 2, "signal": None, "stderr_tail": "disk full"},
        actor="alice",
        channel="api",
        correlation_id="9f1c2b7e-5a0d-4c44-8d3e-2f6b1a7c9e10",
        changed_at=datetime(2026, 12, 5, 3, 14, 7, 512000, tzinfo=UTC),
    )
    documented = documented_bodies()["execution.failed"]
    assert documented["data"] == built("execution.failed", data)["data"]
    assert shape(documented) == shape(built("execution.failed", data))


def test_the_monitor_example_is_what_the_service_builds(settings):
    settings.EXECUTIONS_PUBLIC_URL = "https://executions.example.com"
    data = monitor_event_data(
        monitor_id="01a24610-2b3c-7d4e-9f50-6a7b8c9d0e1f",
        name="nightly-report",
        owner="alice",
        change_id=77,
        previous_state="up",
        current_state="down",
        reason="missed",
        run_id=None,
        actor=None,
        channel="worker",
        correlation_id="",
        changed_at=datetime(2026, 12, 5, 3, 14, 7, 512000, tzinfo=UTC),
    )
    assert documented_bodies()["monitor.down"]["data"] == built("monitor.down", data)["data"]


def test_the_test_event_example_is_what_the_service_builds(db):
    message = notification_endpoint_send_test(NotificationEndpointFactory())
    documented = documented_bodies()["notification.test"]
    assert shape(documented) == shape(built(message.event_type, message.payload))
    assert documented["data"]["message"] == message.payload["message"]
