import base64
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import override_settings
from django.utils import timezone

from executions.api.limits import MAX_JSON_OBJECT_BYTES, MAX_PAGE_BYTES
from executions.api.pagination import MAX_PAGE_SIZE
from executions.models import Execution, ExecutionStatus

from .api import UNKNOWN_EXECUTION_ID
from .factories import ExecutionFactory, UserFactory

URL = "/api/v1/executions"


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def as_ids(executions):
    return [str(execution.id) for execution in executions]


# --- GET one -----------------------------------------------------------------------------


def test_get_returns_the_execution_with_an_etag(owner_client, running_execution):
    response = owner_client.get(f"{URL}/{running_execution.id}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(running_execution.id)
    assert body["name"] == running_execution.name
    assert body["status"] == "running"
    assert body["created_by"] == "owner"
    assert set(body) == {
        "id",
        "name",
        "status",
        "error_info",
        "metadata",
        "created_by",
        "created_at",
        "updated_at",
        "finished_at",
        "last_heartbeat_at",
        "max_runtime_seconds",
        "deadline_at",
    }
    assert (body["max_runtime_seconds"], body["deadline_at"]) == (None, None)
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')


def test_get_shows_a_finished_execution_as_it_is(owner_client, owner):
    execution = ExecutionFactory(
        created_by=owner,
        status=ExecutionStatus.FAILED,
        error_info={"reason": "oom"},
        finished_at=timezone.now(),
        metadata={"k": [1, 2]},
    )
    body = owner_client.get(f"{URL}/{execution.id}").json()
    assert body["status"] == "failed"
    assert body["error_info"] == {"reason": "oom"}
    assert body["metadata"] == {"k": [1, 2]}
    assert body["finished_at"] is not None


@pytest.mark.parametrize("execution_id", ["not-a-uuid", UNKNOWN_EXECUTION_ID, "0" * 5000])
def test_get_unknown_ids_are_404(owner_client, execution_id):
    response = owner_client.get(f"{URL}/{execution_id}")
    assert response.status_code == 404
    assert response.json()["error_code"] == "EXECUTION_NOT_FOUND"


def test_get_someone_elses_execution_is_404_unless_manager(
    client_for, other_user, manager, running_execution
):
    response = client_for(other_user).get(f"{URL}/{running_execution.id}")
    assert response.status_code == 404
    assert response.json()["error_code"] == "EXECUTION_NOT_FOUND"
    assert client_for(manager).get(f"{URL}/{running_execution.id}").status_code == 200


def test_get_needs_authentication(client, running_execution):
    assert client.get(f"{URL}/{running_execution.id}").status_code == 401


# --- Visibility of the list --------------------------------------------------------------


def test_list_shows_only_the_callers_executions(client_for, owner, other_user):
    mine = ExecutionFactory.create_batch(2, created_by=owner)
    theirs = ExecutionFactory.create_batch(2, created_by=other_user)
    ExecutionFactory(created_by=None)

    assert sorted(ids(client_for(owner).get(URL))) == sorted(as_ids(mine))
    assert sorted(ids(client_for(other_user).get(URL))) == sorted(as_ids(theirs))


def test_filters_never_reach_other_users_executions(client_for, owner, other_user):
    hidden = ExecutionFactory(created_by=owner, name="secret-job")
    other = client_for(other_user)
    assert ids(other.get(URL, {"name": "secret-job"})) == []
    assert ids(other.get(URL, {"name_contains": "secret", "status": "running"})) == []
    assert ids(other.get(URL, {"stale": "false"})) == []
    assert ids(client_for(owner).get(URL, {"name": "secret-job"})) == [str(hidden.id)]


def test_managers_and_superusers_list_everyones_executions(client_for, owner, other_user, manager, superuser):
    everyone = [
        ExecutionFactory(created_by=owner),
        ExecutionFactory(created_by=other_user),
        ExecutionFactory(created_by=None),
    ]
    group = Group.objects.create(name="operators")
    group.permissions.add(Permission.objects.get(codename="manage_all_executions"))
    operator = UserFactory(username="operator")
    operator.groups.add(group)

    for user in (manager, superuser, operator):
        assert sorted(ids(client_for(user).get(URL))) == sorted(as_ids(everyone))


def test_inactive_users_cannot_list(client_for, owner):
    ExecutionFactory(created_by=owner)
    client = client_for(owner)
    owner.is_active = False
    owner.save()
    assert client.get(URL).status_code == 401


def test_list_needs_authentication(client, db):
    assert client.get(URL).status_code == 401


# --- Order and filters -------------------------------------------------------------------


def test_list_is_newest_first_with_id_breaking_ties(owner_client, owner):
    now = timezone.now()
    old = ExecutionFactory(created_by=owner, created_at=now - timedelta(hours=1))
    tied = [ExecutionFactory(created_by=owner, created_at=now) for _ in range(3)]
    new = ExecutionFactory(created_by=owner, created_at=now + timedelta(seconds=1))

    expected = [new, *sorted(tied, key=lambda e: e.id, reverse=True), old]
    assert ids(owner_client.get(URL)) == as_ids(expected)


def test_status_filter_takes_several_statuses(owner_client, owner):
    by_status = {
        status: ExecutionFactory(created_by=owner, status=status) for status in ExecutionStatus.values
    }

    assert ids(owner_client.get(URL, {"status": "failed"})) == as_ids([by_status["failed"]])
    repeated = ids(owner_client.get(f"{URL}?status=failed&status=cancelled"))
    commas = ids(owner_client.get(URL, {"status": "failed,cancelled"}))
    assert sorted(repeated) == sorted(commas) == sorted(as_ids([by_status["failed"], by_status["cancelled"]]))


def test_name_filters(owner_client, owner):
    report = ExecutionFactory(created_by=owner, name="nightly-report")
    ExecutionFactory(created_by=owner, name="nightly-report-2")
    ExecutionFactory(created_by=owner, name="backup")

    assert ids(owner_client.get(URL, {"name": "nightly-report"})) == [str(report.id)]
    assert len(ids(owner_client.get(URL, {"name_contains": "NIGHTLY"}))) == 2


def test_time_range_filters(owner_client, owner):
    now = timezone.now().replace(microsecond=0)
    old = ExecutionFactory(
        created_by=owner, created_at=now - timedelta(days=2), updated_at=now - timedelta(days=2)
    )
    middle = ExecutionFactory(created_by=owner, created_at=now - timedelta(days=1), updated_at=now)
    ExecutionFactory(created_by=owner, created_at=now, updated_at=now)
    day_ago = (now - timedelta(days=1)).isoformat()

    assert ids(owner_client.get(URL, {"created_before": day_ago})) == [str(old.id)]
    assert ids(owner_client.get(URL, {"created_after": day_ago, "created_before": now.isoformat()})) == [
        str(middle.id)
    ]
    assert ids(owner_client.get(URL, {"updated_before": day_ago})) == [str(old.id)]
    assert len(ids(owner_client.get(URL, {"updated_after": now.isoformat()}))) == 2


@override_settings(EXECUTIONS_STALE_AFTER=timedelta(minutes=30))
def test_stale_filter_uses_heartbeat_or_creation(owner_client, owner):
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    silent = ExecutionFactory(created_by=owner, created_at=hour_ago)
    beating = ExecutionFactory(
        created_by=owner, created_at=hour_ago, last_heartbeat_at=now - timedelta(minutes=1)
    )
    stopped_beating = ExecutionFactory(
        created_by=owner, created_at=hour_ago - timedelta(hours=1), last_heartbeat_at=hour_ago
    )
    young = ExecutionFactory(created_by=owner, created_at=now - timedelta(minutes=1))
    finished = ExecutionFactory(created_by=owner, created_at=hour_ago, status=ExecutionStatus.FAILED)

    assert sorted(ids(owner_client.get(URL, {"stale": "true"}))) == sorted(as_ids([silent, stopped_beating]))
    assert sorted(ids(owner_client.get(URL, {"stale": "false"}))) == sorted(
        as_ids([beating, young, finished])
    )


# --- Pagination --------------------------------------------------------------------------


def test_pages_follow_each_other_to_the_end(owner_client, owner):
    executions = ExecutionFactory.create_batch(7, created_by=owner)
    expected = as_ids(sorted(executions, key=lambda e: (e.created_at, e.id), reverse=True))

    seen, url, pages = [], f"{URL}?page_size=3", 0
    while url:
        body = owner_client.get(url).json()
        seen += [item["id"] for item in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == expected
    assert pages == 3


def test_next_link_keeps_the_filters(owner_client, owner):
    ExecutionFactory.create_batch(3, created_by=owner, status=ExecutionStatus.FAILED)
    ExecutionFactory.create_batch(3, created_by=owner)
    first = owner_client.get(URL, {"status": "failed", "page_size": 2}).json()
    assert "status=failed" in first["next"] and "page_size=2" in first["next"]
    second = owner_client.get(first["next"]).json()
    assert [item["status"] for item in second["results"]] == ["failed"]
    assert second["next"] is None and second["next_cursor"] is None


@pytest.mark.parametrize("whole_second", [False, True], ids=["microseconds", "whole-second"])
def test_paging_while_rows_are_inserted_skips_nothing_and_repeats_nothing(owner_client, owner, whole_second):
    now = timezone.now()
    # SQLite stores a time of a whole second without its fraction: the tie must page the same.
    tie = (now - timedelta(minutes=5)).replace(microsecond=0 if whole_second else 123456)
    # Ten rows, six of them created in the same microsecond, so that page boundaries fall
    # inside a tie.
    original = [ExecutionFactory(created_by=owner, created_at=tie) for _ in range(6)]
    original += [
        ExecutionFactory(created_by=owner, created_at=now - timedelta(minutes=10 + i)) for i in range(4)
    ]

    seen, url, inserted = [], f"{URL}?page_size=3", 0
    while url:
        body = owner_client.get(url).json()
        seen += [(item["created_at"], item["id"]) for item in body["results"]]
        url = body["next"]
        # Between pages: a newer row, a row in the tie, and an older one.
        ExecutionFactory(created_by=owner, created_at=timezone.now())
        ExecutionFactory(created_by=owner, created_at=tie)
        ExecutionFactory(created_by=owner, created_at=now - timedelta(days=1, minutes=inserted))
        inserted += 1

    seen_ids = [execution_id for _, execution_id in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a row came twice"
    assert set(as_ids(original)) <= set(seen_ids), "a row was skipped"
    positions = [(created_at, uuid.UUID(execution_id)) for created_at, execution_id in seen]
    assert positions == sorted(positions, reverse=True)


# --- Bad query strings -------------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query, loc, error_type",
    [
        ("statuss=running", ["query", "statuss"], "extra_forbidden"),
        ("format=json", ["query", "format"], "extra_forbidden"),
        ("status=bogus", ["query", "status"], "invalid_choice"),
        ("status=running,bogus", ["query", "status"], "invalid_choice"),
        ("status=", ["query", "status"], "empty"),
        ("created_after=yesterday", ["query", "created_after"], "invalid"),
        ("updated_before=2026-13-45", ["query", "updated_before"], "invalid"),
        ("stale=maybe", ["query", "stale"], "invalid_choice"),
        ("cursor=%21%21%21", ["query", "cursor"], "cursor_invalid"),
        ("cursor=abc", ["query", "cursor"], "cursor_invalid"),
        (f"cursor={_cursor('2026-01-01T00:00:00|not-a-uuid')}", ["query", "cursor"], "cursor_invalid"),
        (
            f"cursor={_cursor('2026-01-01T00:00:00|' + UNKNOWN_EXECUTION_ID)}",
            ["query", "cursor"],
            "cursor_invalid",
        ),
        (
            f"cursor={_cursor('99999-01-01T00:00:00+00:00|' + UNKNOWN_EXECUTION_ID)}",
            ["query", "cursor"],
            "cursor_invalid",
        ),
        ("cursor=", ["query", "cursor"], "empty"),
        ("page_size=0", ["query", "page_size"], "greater_than_equal"),
        ("page_size=-1", ["query", "page_size"], "greater_than_equal"),
        (f"page_size={MAX_PAGE_SIZE + 1}", ["query", "page_size"], "less_than_equal"),
        ("page_size=" + "9" * 40, ["query", "page_size"], "less_than_equal"),
        ("page_size=abc", ["query", "page_size"], "int_parsing"),
        ("page_size=", ["query", "page_size"], "empty"),
    ],
)
def test_bad_query_parameters_are_422_items(owner_client, query, loc, error_type):
    response = owner_client.get(f"{URL}?{query}")

    assert response.status_code == 422, response.content
    items = response.json()["detail"]
    assert {"loc": loc, "type": error_type} in [{"loc": item["loc"], "type": item["type"]} for item in items]


def test_every_bad_query_parameter_is_reported_at_once(owner_client):
    response = owner_client.get(f"{URL}?foo=1&status=bogus&page_size=0&cursor=zz")
    assert response.status_code == 422
    locs = [item["loc"] for item in response.json()["detail"]]
    assert locs == [["query", "foo"], ["query", "status"], ["query", "cursor"], ["query", "page_size"]]


def test_largest_page_size_is_accepted(owner_client, owner):
    ExecutionFactory(created_by=owner)
    assert len(ids(owner_client.get(URL, {"page_size": MAX_PAGE_SIZE}))) == 1


def test_a_deep_page_costs_the_same_queries_as_the_first(owner_client, owner, django_assert_num_queries):
    ExecutionFactory.create_batch(9, created_by=owner)
    with django_assert_num_queries(5) as first_page:
        first = owner_client.get(URL, {"page_size": 2}).json()
    first_page_queries = len(first_page.captured_queries)
    url = first["next"]
    for _ in range(3):
        url = owner_client.get(url).json()["next"]
    with django_assert_num_queries(first_page_queries) as deep_page:
        assert len(owner_client.get(url).json()["results"]) == 1
    # Two queries for the page, no OFFSET, whatever the depth: token, permission (the same
    # SQL as a single execution's), the page's ids and sizes, its rows by id, the page's owners.
    page_queries = [q["sql"] for q in deep_page.captured_queries if "executions_execution" in q["sql"]]
    assert len(page_queries) == 2
    assert not any("OFFSET" in query.upper() for query in page_queries)


@pytest.mark.parametrize("suffix", ["", "/{id}", "/{id}/heartbeat", "/{id}/history"])
def test_options_describes_every_route_without_error(owner_client, running_execution, suffix):
    response = owner_client.options(URL + suffix.format(id=running_execution.id))
    assert response.status_code == 200
    assert response.json()["renders"] == ["application/json"]


# --- Bounded pages ---------------------------------------------------------------------


def all_answers(client, url, params):
    """Every page's answer, following `next` from the first page."""
    answers = [client.get(url, params)]
    while True:
        assert answers[-1].status_code == 200, answers[-1].content[:300]
        if answers[-1].json()["next"] is None:
            return answers
        answers.append(client.get(answers[-1].json()["next"]))


def all_pages(client, url, params):
    return [answer.json() for answer in all_answers(client, url, params)]


def assert_each_row_once_in_pages_of_at_most_the_budget(answers, executions):
    assert len(answers) > 1
    assert [len(answer.content) <= MAX_PAGE_BYTES for answer in answers] == [True] * len(answers)
    listed = [item["id"] for answer in answers for item in answer.json()["results"]]
    assert sorted(listed) == sorted(as_ids(executions))  # each exactly once


def test_a_page_ends_early_at_its_byte_budget_and_the_next_pages_have_the_rest(owner_client, owner):
    # Each as large as the API takes: 70 of them are more than one page's budget.
    metadata = {"blob": "x" * (MAX_JSON_OBJECT_BYTES - 20)}
    error_info = {"log": "y" * (MAX_JSON_OBJECT_BYTES - 20)}
    executions = ExecutionFactory.create_batch(70, created_by=owner, metadata=metadata, error_info=error_info)

    answers = all_answers(owner_client, URL, {"page_size": MAX_PAGE_SIZE})

    first = answers[0].json()
    assert len(first["results"]) < 70 and first["next_cursor"] is not None
    assert_each_row_once_in_pages_of_at_most_the_budget(answers, executions)


def test_the_budget_counts_the_bytes_sent_not_the_characters_stored(owner_client, owner):
    """4,094 emoji are 16 KiB in UTF-8 (what the API takes) and 48 KiB as the API sends them
    (each a 12-byte escape, \\ud83d\\ude00): counted as PostgreSQL's characters, 520 such rows
    made 12.5 MB pages."""
    metadata = {"e": "\U0001f600" * 4094}
    executions = ExecutionFactory.create_batch(60, created_by=owner, metadata=metadata)

    answers = all_answers(owner_client, URL, {"page_size": MAX_PAGE_SIZE})

    assert_each_row_once_in_pages_of_at_most_the_budget(answers, executions)
    assert len(answers[0].content) > MAX_PAGE_BYTES * 0.9  # full pages, not tiny ones


def test_the_budget_counts_every_field_of_a_row_not_only_its_json(owner_client, owner):
    # 200 emoji: a name the API takes, 2.4 KB as sent; 500 of them are 1.3 MB.
    executions = Execution.objects.bulk_create(
        Execution(name="\U0001f680" * 200, created_by=owner) for _ in range(MAX_PAGE_SIZE + 20)
    )

    answers = all_answers(owner_client, URL, {"page_size": MAX_PAGE_SIZE})

    assert_each_row_once_in_pages_of_at_most_the_budget(answers, executions)


def test_a_row_larger_than_the_budget_is_a_page_of_its_own(owner_client, owner):
    # Stored before the limits (or by another writer): still listed, one per page.
    huge = {f"k{number}": number for number in range(120_000)}
    an_instant_ago = timezone.now() - timedelta(seconds=1)
    older = ExecutionFactory(created_by=owner, metadata=huge, created_at=an_instant_ago)
    newer = ExecutionFactory(created_by=owner, metadata=huge)

    pages = all_pages(owner_client, URL, {"page_size": 10})

    assert [ids_of["id"] for page in pages for ids_of in page["results"]] == as_ids([newer, older])
    assert [len(page["results"]) for page in pages] == [1, 1]
