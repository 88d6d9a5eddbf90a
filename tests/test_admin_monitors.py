"""The monitors' admin pages, through Django's test client: the list with its states and
strips, pause and resume, a monitor's page with its runs and history."""

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from executions.models import ChangeChannel, ExecutionStatus, Monitor, MonitorStateChange
from executions.services import execution_change_status, execution_create

from .factories import UserFactory, monitor_for

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/executions/monitor/"


@pytest.fixture
def operator(db):
    return UserFactory(
        username="operator",
        is_staff=True,
        permissions=["view_monitor", "change_monitor", "view_execution", "manage_all_executions"],
    )


@pytest.fixture
def operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


def runs(monitor, owner, statuses):
    made = []
    for status in statuses:
        run = execution_create(name=monitor.name, created_by=owner, monitor=monitor)
        if status != ExecutionStatus.RUNNING:
            execution_change_status(execution_id=run.id, status=status, channel=ChangeChannel.API)
        made.append(run)
    return made


def strip(html: str, monitor) -> list[str]:
    row = re.search(rf"<tr>.*?{re.escape(monitor.name)}.*?</tr>", html, re.S).group(0)
    return re.findall(r'class="monitor-run monitor-run-(\w+)"', row)


def test_the_list_shows_states_in_colour_and_the_last_20_runs_oldest_first(operator_client, owner):
    busy = monitor_for(owner, name="busy")
    quiet = monitor_for(owner, name="quiet")
    statuses = ["completed"] * 18 + ["failed", "cancelled", "completed", "running"]
    runs(busy, owner, statuses)

    html = operator_client.get(CHANGELIST).content.decode()

    assert strip(html, busy) == statuses[-20:]
    assert "no runs yet" in html
    assert 'class="monitor-state monitor-state-up" style="color: #2e7d32">Up</strong>' in html
    assert 'class="monitor-state monitor-state-new"' in html
    assert quiet.name in html


def test_the_list_takes_the_same_queries_for_2_monitors_or_20(operator_client, owner):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert operator_client.get(CHANGELIST).status_code == 200
        return len(queries)

    for number in range(2):
        runs(monitor_for(owner, name=f"a{number}"), owner, ["completed", "failed"])
    few = count()
    for number in range(18):
        runs(monitor_for(owner, name=f"b{number}"), owner, ["completed"])

    assert count() == few


def test_a_staff_user_without_manage_all_sees_only_their_monitors(owner, other_user):
    staff = UserFactory(username="staff", is_staff=True, permissions=["view_monitor"])
    monitor_for(staff, name="mine")
    monitor_for(other_user, name="theirs")
    client = Client()
    client.force_login(staff)

    html = client.get(CHANGELIST).content.decode()

    assert "mine" in html and "theirs" not in html


def test_pause_and_resume_actions_go_through_the_service(operator_client, operator, owner):
    first, second = monitor_for(owner, name="first"), monitor_for(owner, name="second")

    response = operator_client.post(
        CHANGELIST,
        {"action": "pause_selected", ACTION_CHECKBOX_NAME: [first.pk, second.pk]},
        follow=True,
    )
    assert "Paused 2 monitors." in response.content.decode()
    assert set(Monitor.objects.values_list("state", flat=True)) == {"paused"}

    operator_client.post(CHANGELIST, {"action": "resume_selected", ACTION_CHECKBOX_NAME: [first.pk]})
    first.refresh_from_db()
    assert first.state == "new"
    records = MonitorStateChange.objects.filter(monitor=first).order_by("id")
    assert [(r.new_state, r.channel, r.actor) for r in records] == [
        ("paused", "admin", operator),
        ("new", "admin", operator),
    ]


def test_a_viewer_without_change_permission_has_no_actions(owner):
    viewer = UserFactory(
        username="viewer", is_staff=True, permissions=["view_monitor", "manage_all_executions"]
    )
    monitor = monitor_for(owner)
    client = Client()
    client.force_login(viewer)

    response = client.post(CHANGELIST, {"action": "pause_selected", ACTION_CHECKBOX_NAME: [monitor.pk]})

    assert response.status_code in (200, 302)
    monitor.refresh_from_db()
    assert monitor.state == "new"


def test_the_monitor_page_shows_its_runs_and_its_state_history(operator_client, owner):
    monitor = monitor_for(owner, schedule="30 2 * * *", timezone_name="Europe/Berlin")
    made = runs(monitor, owner, ["completed", "running"])

    html = operator_client.get(f"{CHANGELIST}{monitor.pk}/change/").content.decode()

    assert "30 2 * * *" in html and "Europe/Berlin" in html
    for run in made:
        assert str(run.pk)[:8] in html
    history = re.search(r'<table class="monitor-history">.*?</table>', html, re.S).group(0)
    assert "<td>new</td><td>up</td>" in history and "owner" in history
    assert 'name="_save"' not in html  # read-only


def test_monitors_are_not_added_or_deleted_here(operator_client, owner):
    monitor = monitor_for(owner)

    assert operator_client.get(f"{CHANGELIST}add/").status_code == 403
    assert operator_client.post(f"{CHANGELIST}{monitor.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Monitor.objects.exists()
