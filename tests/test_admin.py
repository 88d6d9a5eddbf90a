"""The admin site, through Django's test client: what an operator sees and what the actions do."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.utils import timezone

from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status
from executions.worker.deadlines import fail_executions_past_deadline

from .database_down import database_down  # noqa: F401
from .factories import ExecutionFactory, UserFactory

CHANGELIST = "/admin/executions/execution/"


def change_url(execution):
    return f"{CHANGELIST}{execution.pk}/change/"


@pytest.fixture
def operator(db):
    """Staff who may change executions, everyone's."""
    return UserFactory(
        username="operator",
        is_staff=True,
        permissions=["view_execution", "change_execution", "manage_all_executions"],
    )


@pytest.fixture
def admin_client_for(db):
    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def operator_client(admin_client_for, operator):
    return admin_client_for(operator)


def run_action(client, action, executions, url=CHANGELIST, **extra):
    return client.post(
        url,
        {"action": action, "index": 0, ACTION_CHECKBOX_NAME: [str(e.pk) for e in executions], **extra},
        follow=True,
    )


def page_messages(response):
    return [str(message) for message in response.context["messages"]]


def test_list_shows_the_columns_an_operator_reads(operator_client, owner):
    execution = ExecutionFactory(name="nightly-report", created_by=owner)
    ExecutionFactory(name="system-job", created_by=None, status=ExecutionStatus.FAILED)

    response = operator_client.get(CHANGELIST)

    assert response.status_code == 200
    text = response.content.decode()
    assert str(execution.pk)[:8] in text
    assert "nightly-report" in text
    assert 'class="execution-status execution-status-running"' in text
    assert ">owner<" in text and ">system<" in text
    assert "running for" in text
    # The actions this user may run, and no delete.
    assert "Cancel selected executions" in text
    assert "Mark selected executions as failed" in text
    assert "Mark selected executions as completed" in text
    assert "delete_selected" not in text


def test_list_takes_a_fixed_number_of_queries_whatever_the_rows(
    operator_client, django_assert_max_num_queries
):
    ExecutionFactory.create_batch(30)
    with django_assert_max_num_queries(12):
        response = operator_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30


def test_filters_by_status_and_stale(operator_client, settings):
    settings.EXECUTIONS_STALE_AFTER = timedelta(hours=1)
    now = timezone.now()
    stale = ExecutionFactory(name="stale-one", created_at=now - timedelta(hours=3))
    alive = ExecutionFactory(
        name="alive-one", created_at=now - timedelta(hours=3), last_heartbeat_at=now - timedelta(minutes=5)
    )
    done = ExecutionFactory(
        name="done-one", status=ExecutionStatus.COMPLETED, created_at=now - timedelta(hours=3)
    )

    running = operator_client.get(CHANGELIST, {"status__exact": "running"})
    assert set(running.context["cl"].result_list) == {stale, alive}

    stale_only = operator_client.get(CHANGELIST, {"stale": "yes"})
    assert list(stale_only.context["cl"].result_list) == [stale]
    assert "no sign of life for 1h" in stale_only.content.decode()

    assert done not in operator_client.get(CHANGELIST, {"status__exact": "running"}).context["cl"].result_list


def test_search_by_the_start_of_the_name_and_of_the_id(operator_client):
    first = ExecutionFactory(name="import-customers")
    second = ExecutionFactory(name="export-invoices")

    by_name = operator_client.get(CHANGELIST, {"q": "IMPORT-cust"})
    assert list(by_name.context["cl"].result_list) == [first]
    # The start of the name only: an index answers it on a million rows.
    assert list(operator_client.get(CHANGELIST, {"q": "customers"}).context["cl"].result_list) == []

    by_short_id = operator_client.get(CHANGELIST, {"q": str(second.pk)[:8]})
    assert second in by_short_id.context["cl"].result_list

    by_full_id = operator_client.get(CHANGELIST, {"q": str(second.pk)})
    assert list(by_full_id.context["cl"].result_list) == [second]


def test_the_name_search_is_answered_from_the_name_index(operator_client):
    """Migration 0007's index, which a table rebuild on SQLite (0008) had dropped: without
    it every search read the whole table (migration 0014). A later migration that rebuilds the
    table on SQLite drops it again: this test says so."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ExecutionFactory.create_batch(3, name="nightly-report")
    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(CHANGELIST, {"q": "nightly"})
    assert len(response.context["cl"].result_list) == 3
    [search, *_] = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT")
        and "executions_execution" in query["sql"]
        and "LIKE" in query["sql"]
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # On a few rows the planner would rightly read the table: ask whether it can use
            # the index at all.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + search)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + search)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "execution_name_prefix_idx" in plan, plan


def test_cancel_selected_changes_running_ones_and_counts_the_skipped(operator_client, operator):
    running = ExecutionFactory.create_batch(2)
    finished = ExecutionFactory(status=ExecutionStatus.COMPLETED)

    response = run_action(operator_client, "cancel_selected", [*running, finished])

    assert response.status_code == 200
    assert page_messages(response) == ["Cancelled 2 executions; 1 skipped because it was no longer running."]
    assert {e.status for e in Execution.objects.filter(pk__in=[r.pk for r in running])} == {"cancelled"}
    finished.refresh_from_db()
    assert finished.status == "completed"
    audit = ExecutionStatusChange.objects.order_by("execution_id")
    assert [(a.previous_status, a.new_status, a.channel, a.actor, a.actor_username) for a in audit] == [
        ("running", "cancelled", ChangeChannel.ADMIN, operator, "operator")
    ] * 2


def test_mark_completed_says_plainly_when_all_were_skipped(operator_client):
    execution = ExecutionFactory()
    execution_change_status(execution_id=execution.pk, status="cancelled", channel=ChangeChannel.API)

    response = run_action(operator_client, "mark_completed", [execution])

    assert page_messages(response) == [
        "Marked 0 executions as completed; 1 skipped because it was no longer running."
    ]
    execution.refresh_from_db()
    assert execution.status == "cancelled"


def test_mark_failed_asks_for_a_reason_then_stores_it(operator_client):
    execution = ExecutionFactory()

    form_page = run_action(operator_client, "mark_failed", [execution])
    assert form_page.status_code == 200
    assert "Why?" in form_page.content.decode()
    execution.refresh_from_db()
    assert execution.status == "running"  # nothing happens before the reason is given

    no_reason = run_action(operator_client, "mark_failed", [execution], apply="Mark as failed", reason="  ")
    assert "This field is required." in no_reason.content.decode()
    execution.refresh_from_db()
    assert execution.status == "running"

    done = run_action(
        operator_client, "mark_failed", [execution], apply="Mark as failed", reason="Worker host lost"
    )
    assert page_messages(done) == ["Marked 1 execution as failed."]
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error_info == {"reason": "Worker host lost"}
    audit = ExecutionStatusChange.objects.get(execution=execution)
    assert (audit.channel, audit.error_info) == ("admin", {"reason": "Worker host lost"})


def test_select_all_acts_on_the_filtered_list(operator_client):
    kept = ExecutionFactory(name="keep-me")
    targets = ExecutionFactory.create_batch(3, name="batch-job")

    response = run_action(
        operator_client, "cancel_selected", targets[:1], url=f"{CHANGELIST}?q=batch", select_across=1
    )

    assert page_messages(response) == ["Cancelled 3 executions."]
    assert set(Execution.objects.filter(status="cancelled")) == set(targets)
    kept.refresh_from_db()
    assert kept.status == "running"


def test_change_page_is_read_only_and_shows_the_history(operator_client):
    execution = ExecutionFactory(name="etl")
    execution_change_status(
        execution_id=execution.pk,
        status="failed",
        channel=ChangeChannel.API,
        error_info={"code": 7, "message": "disk full"},
    )

    page = operator_client.get(change_url(execution))

    assert page.status_code == 200
    text = page.content.decode()
    assert 'name="status"' not in text and 'name="name"' not in text
    assert 'name="_save"' not in text
    assert "Status history (audit trail)" in text
    assert "&quot;message&quot;: &quot;disk full&quot;" in text  # pretty-printed JSON
    assert "{\n  &quot;code&quot;: 7," in text

    # Posting a status anyway changes nothing.
    response = operator_client.post(change_url(execution), {"status": "running", "name": "renamed"})
    assert response.status_code == 403
    execution.refresh_from_db()
    assert (execution.status, execution.name) == ("failed", "etl")


def test_no_add_or_delete(operator_client):
    execution = ExecutionFactory()
    assert operator_client.get(f"{CHANGELIST}add/").status_code == 403
    assert operator_client.post(f"{CHANGELIST}{execution.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Execution.objects.filter(pk=execution.pk).exists()


def test_view_only_staff_sees_no_actions_and_cannot_run_one(admin_client_for):
    viewer = UserFactory(
        username="viewer", is_staff=True, permissions=["view_execution", "manage_all_executions"]
    )
    execution = ExecutionFactory()
    client = admin_client_for(viewer)

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "Cancel selected executions" not in page.content.decode()

    run_action(client, "cancel_selected", [execution])
    execution.refresh_from_db()
    assert execution.status == "running"
    assert not ExecutionStatusChange.objects.exists()


def test_staff_without_manage_all_sees_and_changes_only_their_own(admin_client_for):
    staff = UserFactory(username="staffer", is_staff=True, permissions=["view_execution", "change_execution"])
    own = ExecutionFactory(created_by=staff)
    someone_elses = ExecutionFactory()
    client = admin_client_for(staff)

    assert list(client.get(CHANGELIST).context["cl"].result_list) == [own]

    response = run_action(client, "cancel_selected", [own, someone_elses])
    assert page_messages(response) == ["Cancelled 1 execution."]
    someone_elses.refresh_from_db()
    assert someone_elses.status == "running"

    assert client.get(change_url(someone_elses)).status_code == 302  # "doesn't exist", back to the list


def test_staff_without_permissions_is_refused(admin_client_for):
    client = admin_client_for(UserFactory(username="nobody", is_staff=True))
    assert client.get(CHANGELIST).status_code == 403


def test_ids_that_are_not_uuids_select_nothing(operator_client):
    execution = ExecutionFactory()

    response = operator_client.post(
        CHANGELIST,
        {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: ["nope", str(execution.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert page_messages(response) == ["Cancelled 1 execution."]

    response = operator_client.post(
        CHANGELIST, {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: ["nope"]}, follow=True
    )
    assert response.status_code == 200
    assert page_messages(response) == [
        "Items must be selected in order to perform actions on them. No items have been changed."
    ]


@pytest.mark.postgres_only
def test_a_big_filtered_list_shows_the_planner_estimate_instead_of_counting(operator_client, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from executions.admin import executions as executions_admin

    ExecutionFactory.create_batch(3, status=ExecutionStatus.FAILED)
    ExecutionFactory(status=ExecutionStatus.RUNNING)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE executions_execution")
    monkeypatch.setattr(executions_admin, "EXACT_COUNT_UP_TO", 0)  # every list counts as big

    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(CHANGELIST, {"status__exact": "failed"})

    assert response.status_code == 200
    assert response.context["cl"].result_count > 0
    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if "COUNT(" in sql], statements
    assert [sql for sql in statements if sql.startswith("EXPLAIN")]


# --- What a first-time operator reads -----------------------------------------------------


def test_the_list_is_titled_for_what_it_is(operator_client):
    text = operator_client.get(CHANGELIST).content.decode()
    assert "<h1>Executions</h1>" in text
    assert "<title>Executions | " in text
    assert "to change" not in text


def test_view_site_leads_to_the_api_docs_which_answer(operator_client):
    page = operator_client.get(CHANGELIST)
    assert page.context["site_url"] == "/api/docs/"
    assert '<a href="/api/docs/">View site</a>' in page.content.decode()
    assert operator_client.get("/api/docs/").status_code == 200


def test_times_show_seconds_and_utc_in_the_list_the_page_and_the_audit_trail(operator_client):
    created = datetime(2026, 11, 29, 3, 12, 44, tzinfo=UTC)
    execution = ExecutionFactory(created_at=created, last_heartbeat_at=created + timedelta(seconds=75))
    execution_change_status(execution_id=execution.pk, status="cancelled", channel=ChangeChannel.API)
    finished = datetime(2026, 11, 29, 3, 20, 5, 250_000, tzinfo=UTC)
    Execution.objects.filter(pk=execution.pk).update(finished_at=finished, updated_at=finished)
    ExecutionStatusChange.objects.update(created_at=finished)

    row = operator_client.get(CHANGELIST).content.decode()
    assert '<td class="field-created">2026-11-29 03:12:44 UTC</td>' in row
    assert '<td class="field-last_heartbeat">2026-11-29 03:13:59 UTC</td>' in row

    page = operator_client.get(change_url(execution)).content.decode()
    for label, shown in [
        ("Created at", "2026-11-29 03:12:44 UTC"),
        ("Last heartbeat at", "2026-11-29 03:13:59 UTC"),
        ("Finished at", "2026-11-29 03:20:05 UTC"),
    ]:
        assert re.search(rf"<label>{label}:</label>\s*<div class=\"readonly\">{shown}</div>", page), label
    assert '<td class="field-changed_at"><p>2026-11-29 03:20:05 UTC</p></td>' in page
    # Django's own format ("Nov. 29, 2026, 3:12 a.m.") nowhere.
    assert "a.m." not in row and "a.m." not in page


def test_each_audit_record_is_one_row_without_a_heading_of_its_own(operator_client):
    execution = ExecutionFactory()
    execution_change_status(execution_id=execution.pk, status="cancelled", channel=ChangeChannel.API)
    change = ExecutionStatusChange.objects.get()

    page = operator_client.get(change_url(execution)).content.decode()

    audit = page[page.index("Status history (audit trail)") :]
    assert audit.count('<tr class="form-row">') == 1
    # Django's tabular inline heads each row with str(record), which names its UUID.
    assert str(change) not in page
    assert 'class="original"' not in audit


def test_history_leads_to_the_audit_trail_on_the_execution_page(operator_client):
    execution = ExecutionFactory()

    page = operator_client.get(change_url(execution)).content.decode()
    assert "/history/" not in page  # no History button

    response = operator_client.get(f"{CHANGELIST}{execution.pk}/history/")
    assert (response.status_code, response["Location"]) == (302, change_url(execution))
    assert "doesn't have a change history" not in operator_client.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    "query",
    [
        {"status__exact": "\x00"},
        {"q": "\x00"},
        {"q": "job\x00"},
        {"created_at__gte": "\x00"},
        {"created_at__year": "\x00"},
        {"stale": "\x00"},
        {"o": "\x00"},
        {"p": "\x00"},
        {"\x00": "1"},
    ],
)
def test_a_filter_or_search_with_nul_is_refused_like_any_invalid_filter_not_a_500(operator_client, query):
    # PostgreSQL cannot compare text with NUL (DataError): this was a 500 there.
    ExecutionFactory(name="job")
    response = operator_client.get(CHANGELIST, query)

    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?e=1"
    assert operator_client.get(response["Location"]).status_code == 200


def test_admin_with_the_database_down_is_a_503_page_with_retry_after(operator_client, request):
    request.getfixturevalue("database_down")
    operator_client.raise_request_exception = False
    anonymous = Client(raise_request_exception=False)

    answers = [
        operator_client.get("/admin/"),
        operator_client.get(CHANGELIST),
        anonymous.post("/admin/login/", {"username": "operator", "password": "whatever"}),
    ]

    for response in answers:
        assert response.status_code == 503
        assert response["Content-Type"].startswith("text/html")
        assert int(response["Retry-After"]) > 0
        assert b"Service unavailable" in response.content


def test_the_deadline_shows_in_the_list_and_on_the_page_and_the_worker_in_the_audit_trail(operator_client):
    created = datetime(2026, 11, 29, 3, 12, 44, tzinfo=UTC)
    execution = ExecutionFactory(
        created_at=created, max_runtime_seconds=5400, deadline_at=created + timedelta(seconds=5400)
    )
    unlimited = ExecutionFactory()
    fail_executions_past_deadline(timezone.now())

    rows = operator_client.get(CHANGELIST).content.decode()
    shown = "2026-11-29 04:42:44 UTC (max runtime 1h 30m)"
    assert f'<td class="field-deadline">{shown}</td>' in rows
    assert '<td class="field-deadline">-</td>' in rows  # the one without

    page = operator_client.get(change_url(execution)).content.decode()
    assert re.search(rf"<label>Deadline:</label>\s*<div class=\"readonly\">{re.escape(shown)}</div>", page)
    assert '<td class="field-channel"><p>Worker</p></td>' in page
    assert '<td class="field-who"><p>system</p></td>' in page
    assert "deadline_exceeded" in page
    assert Execution.objects.get(pk=unlimited.pk).status == "running"
