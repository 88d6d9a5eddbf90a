"""The monitors resource: what a client sends and sees, owner-scoped, hostile input refused
in the contract's 422 shape, runs created for a monitor."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Execution, Monitor, MonitorState, MonitorStateChange
from executions.monitors.services import monitors_follow_runs, monitors_mark_missed

from .api import ERROR_RESPONSE_KEYS, patch_status
from .factories import UserFactory, monitor_for

pytestmark = pytest.mark.django_db

MONITORS = "/api/v1/monitors"
EXECUTIONS = "/api/v1/executions"


def one(monitor) -> str:
    return f"{MONITORS}/{getattr(monitor, 'pk', monitor)}"


def create(client, **fields):
    body = {"name": "nightly", "schedule": "every 1h", "grace_seconds": 300, **fields}
    return client.post(MONITORS, body, format="json")


def items(response) -> list[tuple]:
    assert response.status_code == 422, response.content
    return [(item["type"], tuple(item["loc"])) for item in response.json()["detail"]]


# --- create -------------------------------------------------------------------------------


def test_create_answers_the_new_monitor(owner_client):
    response = create(owner_client, schedule="30 2 * * *", timezone="Europe/Berlin", max_runtime_seconds=600)

    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"].endswith(f"{MONITORS}/{body['id']}")
    assert {key: body[key] for key in ("name", "owner", "schedule", "timezone", "grace_seconds")} == {
        "name": "nightly",
        "owner": "owner",
        "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "grace_seconds": 300,
    }
    assert (body["state"], body["state_reason"], body["paused"]) == ("new", None, False)
    assert body["max_runtime_seconds"] == 600
    assert body["next_due_at"].endswith(("T00:30:00Z", "T01:30:00Z"))  # 02:30 in Berlin
    assert body["last_execution"] is None and body["last_runs"] == []
    assert Monitor.objects.get().owner.username == "owner"


def test_a_monitor_created_paused_is_not_watched(owner_client):
    body = create(owner_client, paused=True).json()

    assert (body["state"], body["paused"], body["late_after"], body["next_due_at"]) == (
        "paused",
        True,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"schedule": "every 1y"}, [("schedule_invalid", ("body", "schedule"))]),
        ({"schedule": "61 * * * *"}, [("schedule_invalid", ("body", "schedule"))]),
        ({"schedule": "* * * * * *"}, [("schedule_invalid", ("body", "schedule"))]),
        ({"schedule": ""}, [("string_too_short", ("body", "schedule"))]),
        ({"schedule": 5}, [("string_type", ("body", "schedule"))]),
        ({"timezone": "Mars/Olympus"}, [("timezone_invalid", ("body", "timezone"))]),
        ({"timezone": "../../etc/passwd"}, [("timezone_invalid", ("body", "timezone"))]),
        ({"grace_seconds": -1}, [("greater_than_equal", ("body", "grace_seconds"))]),
        ({"grace_seconds": 10**12}, [("less_than_equal", ("body", "grace_seconds"))]),
        ({"grace_seconds": 1.5}, [("int_from_float", ("body", "grace_seconds"))]),
        ({"max_runtime_seconds": 0}, [("greater_than_equal", ("body", "max_runtime_seconds"))]),
        ({"name": ""}, [("string_too_short", ("body", "name"))]),
        ({"name": "a\x1b[2Jb"}, [("string_control_characters", ("body", "name"))]),
        ({"name": "x" * 201}, [("string_too_long", ("body", "name"))]),
        ({"name": "nul\x00"}, [("string_unstorable", ("body", "name"))]),
        ({"paused": "maybe"}, [("bool_parsing", ("body", "paused"))]),
        ({"state": "up"}, [("extra_forbidden", ("body", "state"))]),
        (
            {"schedule": "nope", "timezone": "nowhere"},
            [("schedule_invalid", ("body", "schedule")), ("timezone_invalid", ("body", "timezone"))],
        ),
    ],
)
def test_create_refuses_bad_fields_with_the_contracts_422_items(owner_client, fields, expected):
    assert items(create(owner_client, **fields)) == expected
    assert not Monitor.objects.exists()


@pytest.mark.parametrize("body", [None, [], "text", {"name": "x"}])
def test_create_refuses_bodies_that_are_not_a_monitor(owner_client, body):
    response = owner_client.post(MONITORS, body, format="json")

    assert response.status_code == 422
    assert not Monitor.objects.exists()


def test_a_name_is_unique_per_owner(owner_client, client_for, other_user):
    assert create(owner_client).status_code == 201

    again = create(owner_client)

    assert again.status_code == 409
    assert set(again.json()) == ERROR_RESPONSE_KEYS
    assert again.json()["error_code"] == "MONITOR_NAME_TAKEN"
    assert create(client_for(other_user)).status_code == 201


def test_anonymous_callers_are_refused(db):
    from rest_framework.test import APIClient

    assert APIClient().get(MONITORS).status_code == 401
    assert APIClient().post(MONITORS, {}, format="json").status_code == 401


# --- read ---------------------------------------------------------------------------------


def test_owners_see_their_own_and_managers_see_all(owner, other_user, manager, client_for):
    mine = monitor_for(owner, name="mine")
    theirs = monitor_for(other_user, name="theirs")

    assert [m["name"] for m in client_for(owner).get(MONITORS).json()["results"]] == ["mine"]
    assert client_for(owner).get(one(theirs)).status_code == 404
    assert client_for(owner).get(one(theirs)).json()["error_code"] == "MONITOR_NOT_FOUND"
    assert client_for(owner).get(one("not-a-uuid")).status_code == 404
    assert {m["name"] for m in client_for(manager).get(MONITORS).json()["results"]} == {"mine", "theirs"}
    assert client_for(manager).get(one(mine)).json()["owner"] == "owner"


def test_the_list_pages_with_a_cursor_newest_first(owner, owner_client):
    for number in range(5):
        monitor_for(owner, name=f"m{number}")

    first = owner_client.get(MONITORS, {"page_size": 2}).json()
    second = owner_client.get(MONITORS, {"page_size": 2, "cursor": first["next_cursor"]}).json()
    third = owner_client.get(first["next"].replace("page_size=2", "page_size=2")).json()

    assert [m["name"] for m in first["results"]] == ["m4", "m3"]
    assert [m["name"] for m in second["results"]] == ["m2", "m1"]
    assert third == second
    last = owner_client.get(MONITORS, {"page_size": 2, "cursor": second["next_cursor"]}).json()
    assert ([m["name"] for m in last["results"]], last["next_cursor"], last["next"]) == (["m0"], None, None)


def test_the_list_filters_by_state_and_refuses_unknown_parameters(owner, owner_client):
    monitor_for(owner, name="watched")
    monitor_for(owner, name="resting", paused=True)

    assert [m["name"] for m in owner_client.get(MONITORS, {"state": "paused"}).json()["results"]] == [
        "resting"
    ]
    assert items(owner_client.get(MONITORS, {"state": "sideways", "colour": "red", "cursor": "x"})) == [
        ("extra_forbidden", ("query", "colour")),
        ("invalid_choice", ("query", "state")),
        ("cursor_invalid", ("query", "cursor")),
    ]
    # Empty is refused too, rather than ignored (which would list every state).
    assert items(owner_client.get(MONITORS, {"state": ""})) == [("empty", ("query", "state"))]


# --- runs ---------------------------------------------------------------------------------


def test_a_run_created_for_a_monitor_is_its_start(owner, owner_client):
    monitor = monitor_for(owner)

    response = owner_client.post(EXECUTIONS, {"name": "nightly", "monitor": "nightly"}, format="json")

    assert response.status_code == 201, response.content
    run = Execution.objects.get()
    assert run.monitor_id == monitor.id
    body = owner_client.get(one(monitor)).json()
    assert body["state"] == "up"
    assert body["last_execution"]["id"] == str(run.id)
    assert [r["id"] for r in body["last_runs"]] == [str(run.id)]
    assert body["next_due_at"] > monitor.next_due_at.isoformat()


def test_a_run_with_an_idempotency_key_starts_once(owner, owner_client):
    monitor = monitor_for(owner)
    body = {"name": "nightly", "monitor": "nightly"}

    for _ in range(2):
        assert owner_client.post(EXECUTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201

    assert Execution.objects.filter(monitor=monitor).count() == 1
    assert MonitorStateChange.objects.filter(monitor=monitor).count() == 1


@pytest.mark.parametrize("reference", ["unknown", "theirs"])
def test_a_run_for_a_monitor_the_caller_may_not_use_is_a_422(owner_client, other_user, reference):
    monitor_for(other_user, name="theirs")

    response = owner_client.post(EXECUTIONS, {"name": "job", "monitor": reference}, format="json")

    assert items(response) == [("monitor_unknown", ("body", "monitor"))]
    assert response.json()["detail"][0]["input"] == reference
    assert not Execution.objects.exists()


def test_a_manager_runs_another_owners_monitor_by_name_or_by_id_when_names_clash(
    client_for, manager, owner, other_user
):
    mine = monitor_for(owner, name="shared")
    monitor_for(other_user, name="shared")
    unique = monitor_for(owner, name="unique")
    client = client_for(manager)

    assert client.post(EXECUTIONS, {"name": "j", "monitor": "unique"}, format="json").status_code == 201
    assert items(client.post(EXECUTIONS, {"name": "j", "monitor": "shared"}, format="json")) == [
        ("monitor_ambiguous", ("body", "monitor"))
    ]
    assert client.post(EXECUTIONS, {"name": "j", "monitor": str(mine.id)}, format="json").status_code == 201
    assert Execution.objects.filter(monitor=unique).count() == 1
    assert Execution.objects.filter(monitor=mine).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_runs_end_through_the_api_moves_the_monitor(owner, client_for):
    client = client_for(owner)
    monitor = monitor_for(owner)
    run = client.post(EXECUTIONS, {"name": "nightly", "monitor": "nightly"}, format="json").json()

    assert patch_status(client, run["id"], "failed").status_code == 200
    monitors_follow_runs()

    body = client.get(one(monitor)).json()
    assert (body["state"], body["state_reason"]) == ("down", "failed")
    assert body["last_runs"][0]["status"] == "failed"
    history = client.get(f"{one(monitor)}/history").json()["results"]
    assert [
        (c["previous_state"], c["new_state"], c["reason"], c["actor"], c["channel"]) for c in history
    ] == [
        ("new", "up", None, "owner", "api"),
        ("up", "down", "failed", "owner", "api"),
    ]
    assert {c["execution_id"] for c in history} == {run["id"]}


# --- update, pause, resume, delete -------------------------------------------------------


def test_update_changes_only_the_fields_given(owner, owner_client):
    monitor = monitor_for(owner)

    response = owner_client.patch(
        one(monitor), {"schedule": "*/5 * * * *", "grace_seconds": 30}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["schedule"], body["grace_seconds"]) == ("nightly", "*/5 * * * *", 30)
    monitor.refresh_from_db()
    assert monitor.next_due_at.minute % 5 == 0
    assert monitor.late_after == monitor.next_due_at + timedelta(seconds=30)


def test_max_runtime_may_be_cleared_but_other_fields_not_nulled(owner, owner_client):
    monitor = monitor_for(owner, max_runtime_seconds=60)

    assert (
        owner_client.patch(one(monitor), {"max_runtime_seconds": None}, format="json").json()[
            "max_runtime_seconds"
        ]
        is None
    )
    assert items(owner_client.patch(one(monitor), {"name": None, "grace_seconds": None}, format="json")) == [
        ("string_type", ("body", "name")),
        ("int_type", ("body", "grace_seconds")),
    ]


def test_pause_and_resume_are_recorded_with_who_asked(owner, owner_client):
    monitor = monitor_for(owner)

    paused = owner_client.patch(one(monitor), {"paused": True}, format="json", HTTP_X_REQUEST_ID="r-1").json()
    resumed = owner_client.patch(one(monitor), {"paused": False}, format="json").json()

    assert (paused["state"], paused["late_after"]) == ("paused", None)
    assert (resumed["state"], resumed["paused"]) == ("new", False)
    history = owner_client.get(f"{one(monitor)}/history").json()
    assert [(c["previous_state"], c["new_state"], c["actor"]) for c in history["results"]] == [
        ("new", "paused", "owner"),
        ("paused", "new", "owner"),
    ]
    assert history["results"][0]["correlation_id"] == "r-1"


def test_renaming_to_a_taken_name_is_a_409(owner, owner_client):
    monitor_for(owner, name="a")
    b = monitor_for(owner, name="b")

    response = owner_client.patch(one(b), {"name": "a"}, format="json")

    assert response.status_code == 409
    b.refresh_from_db()
    assert b.name == "b"


def test_another_owners_monitor_cannot_be_changed_or_deleted(owner, other_user, client_for):
    theirs = monitor_for(other_user)
    client = client_for(owner)

    assert client.patch(one(theirs), {"paused": True}, format="json").status_code == 404
    assert client.delete(one(theirs)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == MonitorState.NEW


def test_delete_removes_the_monitor_and_keeps_its_runs(owner, owner_client):
    monitor = monitor_for(owner)
    owner_client.post(EXECUTIONS, {"name": "nightly", "monitor": "nightly"}, format="json")

    assert owner_client.delete(one(monitor)).status_code == 204
    assert owner_client.get(one(monitor)).status_code == 404
    assert Execution.objects.get().monitor is None


# --- history ------------------------------------------------------------------------------


def test_the_history_pages_oldest_first(owner, owner_client):
    monitor = monitor_for(owner, schedule="every 1m", grace_seconds=0)
    for _ in range(3):
        owner_client.patch(one(monitor), {"paused": True}, format="json")
        owner_client.patch(one(monitor), {"paused": False}, format="json")
    monitors_mark_missed(now=timezone.now() + timedelta(minutes=5))

    first = owner_client.get(f"{one(monitor)}/history", {"page_size": 4}).json()
    rest = owner_client.get(f"{one(monitor)}/history", {"page_size": 4, "after": first["next_cursor"]}).json()

    assert first["has_more"] and not rest["has_more"]
    states = [c["new_state"] for c in first["results"] + rest["results"]]
    assert states == ["paused", "new"] * 3 + ["down"]
    assert rest["results"][-1]["reason"] == "missed" and rest["results"][-1]["channel"] == "worker"
    assert items(owner_client.get(f"{one(monitor)}/history", {"after": "!!", "page_size": 0})) == [
        ("cursor_invalid", ("query", "after")),
        ("greater_than_equal", ("query", "page_size")),
    ]


def test_a_user_can_not_read_another_owners_history(owner, other_user, client_for):
    assert client_for(owner).get(f"{one(monitor_for(other_user))}/history").status_code == 404


def test_a_plain_execution_is_still_created_without_a_monitor(owner_client):
    assert owner_client.post(EXECUTIONS, {"name": "plain"}, format="json").status_code == 201
    assert Execution.objects.get().monitor is None


def test_every_user_sees_only_the_monitors_of_active_accounts(owner, client_for):
    inactive = UserFactory(username="gone", is_active=False)
    monitor_for(inactive)

    assert client_for(owner).get(MONITORS).json()["results"] == []


def test_an_update_without_a_body_changes_nothing(owner, owner_client):
    monitor = monitor_for(owner)

    response = owner_client.patch(one(monitor))

    assert response.status_code == 200
    assert response.json()["name"] == "nightly"
    assert not MonitorStateChange.objects.exists()
