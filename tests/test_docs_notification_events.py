"""The example bodies docs/api.md shows for each event type are what the service builds from
the same values: every field, at every level, nothing more and nothing less."""

import json
import re
from datetime import datetime
from pathlib import Path

from executions.notifications.events import body_bytes, execution_event_data, monitor_event_data
from executions.notifications.services import notification_endpoint_send_test

from .factories import NotificationEndpointFactory

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
SECTION = "## Notifications: the events and what each message says"


def documented_bodies() -> dict[str, dict]:
    section = API_DOC.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    return {body["type"]: body for body in bodies}


def public_url_of(links: dict) -> str:
    return re.match(r"https?://[^/]+", next(iter(links.values()))).group(0)


def built(body: dict) -> dict:
    """The body the service makes for the documented body's type, time and data."""
    data = body["data"]
    when = datetime.fromisoformat(data["changed_at"])
    if body["type"].startswith("execution."):
        data = execution_event_data(
            execution_id=data["id"],
            name=data["name"],
            owner=data["owner"],
            metadata=data["metadata"],
            change_id=data["change_id"],
            previous_status=data["previous_status"],
            current_status=data["current_status"],
            error_info=data["error_info"],
            actor=data["actor"],
            channel=data["channel"],
            correlation_id=data["correlation_id"],
            changed_at=when,
        )
    else:
        data = monitor_event_data(
            monitor_id=data["id"],
            name=data["name"],
            owner=data["owner"],
            change_id=data["change_id"],
            previous_state=data["previous_state"],
            current_state=data["current_state"],
            reason=data["reason"],
            run_id=data["run"],
            actor=data["actor"],
            channel=data["channel"],
            correlation_id=data["correlation_id"] or "",
            changed_at=when,
        )
    return json.loads(body_bytes(body["type"], datetime.fromisoformat(body["timestamp"]), data))


def test_every_event_type_has_an_example():
    assert set(documented_bodies()) == {"execution.failed", "monitor.down", "notification.test"}


def test_the_execution_example_is_what_the_service_builds(settings):
    documented = documented_bodies()["execution.failed"]
    settings.EXECUTIONS_PUBLIC_URL = public_url_of(documented["data"]["links"])
    assert documented == built(documented)


def test_the_monitor_example_is_what_the_service_builds(settings):
    documented = documented_bodies()["monitor.down"]
    settings.EXECUTIONS_PUBLIC_URL = public_url_of(documented["data"]["links"])
    assert documented == built(documented)


def test_the_test_event_example_is_what_the_service_builds(db):
    message = notification_endpoint_send_test(NotificationEndpointFactory())
    documented = documented_bodies()["notification.test"]
    made = json.loads(body_bytes(message.event_type, message.occurred_at, message.payload))
    assert set(documented) == set(made) and set(documented["data"]) == set(made["data"])
    assert documented["data"]["message"] == made["data"]["message"]
