"""GET /api/v1/status-changes: the change feed. Visibility, order, the resumable cursor,
filters, query errors, every write path feeding it, and (PostgreSQL) a consumer that polls
while transactions commit out of id order."""

import base64
import threading
from urllib.parse import urlsplit

import pytest
from django.db import connection, transaction
from django.db.models import Value
from django.db.models.functions import JSONObject

from devtools.net import request
from executions.api.limits import MAX_JSON_OBJECT_BYTES, MAX_PAGE_BYTES
from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status, execution_change_status_bulk

from .factories import ExecutionFactory, UserFactory, api_key_for

FEED = "/api/v1/status-changes"
# Committed data: on PostgreSQL the feed serves no change whose transaction is still open,
# and a test inside a transaction would be one.
pytestmark = pytest.mark.django_db(transaction=True)
# Longest a test waits for a thread's step; a failure then rolls it back instead of hanging.
STEP_TIMEOUT = 60


def change(execution, status=ExecutionStatus.CANCELLED, channel=ChangeChannel.API, actor=None):
    return execution_change_status(execution_id=execution.id, status=status, channel=channel, actor=actor)


def poll(client, cursor=None, **params):
    if cursor is not None:
        params["after"] = cursor
    response = client.get(FEED, params)
    assert response.status_code == 200, response.content
    return response.json()


def read_all(client, **params):
    """Follow the cursor until has_more is false: (items, last next_cursor)."""
    items, cursor = [], None
    while True:
        page = poll(client, cursor, **params)
        items += page["results"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor


def test_the_owner_sees_their_changes_oldest_first_with_the_history_fields(owner, owner_client, other_user):
    first, second = ExecutionFactory(created_by=owner), ExecutionFactory(created_by=owner)
    change(second, ExecutionStatus.FAILED, actor=owner)
    change(first, ExecutionStatus.COMPLETED, channel=ChangeChannel.ADMIN)
    change(ExecutionFactory(created_by=other_user))  # not the owner's

    page = poll(owner_client)

    assert [(item["execution_id"], item["new_status"]) for item in page["results"]] == [
        (str(second.id), "failed"),
        (str(first.id), "completed"),
    ]
    item = page["results"][0]
    assert set(item) == {
        "execution_id",
        "previous_status",
        "new_status",
        "error_info",
        "actor",
        "channel",
        "correlation_id",
        "created_at",
    }
    assert (item["previous_status"], item["actor"], item["channel"]) == ("running", "owner", "api")
    assert page["results"][1]["actor"] is None
    # The same items as the execution's history.
    history = owner_client.get(f"/api/v1/executions/{second.id}/history").json()["results"]
    assert [{k: v for k, v in item.items() if k != "execution_id"}] == history
    assert page["has_more"] is False


def test_managers_see_every_change_and_others_none_of_theirs(owner, other_user, manager, client_for):
    change(ExecutionFactory(created_by=owner))
    change(ExecutionFactory(created_by=None), ExecutionStatus.INTERRUPTED, channel=ChangeChannel.COMMAND)
    assert len(poll(client_for(manager))["results"]) == 2
    assert poll(client_for(other_user))["results"] == []
    assert len(poll(client_for(owner))["results"]) == 1


def test_anonymous_callers_are_refused(client):
    response = client.get(FEED)
    assert response.status_code == 401
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


def test_a_poller_resumes_from_its_cursor_and_never_sees_a_change_twice(owner, owner_client):
    executions = [ExecutionFactory(created_by=owner) for _ in range(5)]
    for execution in executions:
        change(execution)

    first = poll(owner_client, page_size=2)
    assert len(first["results"]) == 2 and first["has_more"] is True
    second = poll(owner_client, first["next_cursor"], page_size=2)
    third = poll(owner_client, second["next_cursor"], page_size=2)
    assert len(third["results"]) == 1 and third["has_more"] is False
    seen = [item["execution_id"] for page in (first, second, third) for item in page["results"]]
    assert seen == [str(execution.id) for execution in executions]

    # Caught up: an empty page hands back a cursor to resume from, the same one.
    idle = poll(owner_client, third["next_cursor"])
    assert idle == {"results": [], "next_cursor": third["next_cursor"], "has_more": False}

    late = ExecutionFactory(created_by=owner)
    change(late, ExecutionStatus.FAILED)
    news = poll(owner_client, idle["next_cursor"])
    assert [item["execution_id"] for item in news["results"]] == [str(late.id)]


def test_an_empty_feed_still_gives_a_cursor_that_catches_what_comes_later(owner, owner_client):
    empty = poll(owner_client)
    assert empty["results"] == [] and empty["has_more"] is False
    execution = ExecutionFactory(created_by=owner)
    change(execution)
    assert [item["execution_id"] for item in poll(owner_client, empty["next_cursor"])["results"]] == [
        str(execution.id)
    ]


def test_filters(owner, owner_client, other_user):
    one, two, three = (ExecutionFactory(created_by=owner) for _ in range(3))
    change(one, ExecutionStatus.FAILED)
    change(two, ExecutionStatus.COMPLETED, channel=ChangeChannel.ADMIN)
    change(three, ExecutionStatus.CANCELLED, channel=ChangeChannel.COMMAND)
    invisible = ExecutionFactory(created_by=other_user)
    change(invisible)

    def ids(**params):
        return [item["execution_id"] for item in read_all(owner_client, **params)[0]]

    assert ids(execution_id=str(two.id)) == [str(two.id)]
    assert ids(execution_id=str(invisible.id)) == []
    assert ids(new_status="failed,cancelled") == [str(one.id), str(three.id)]
    assert ids(channel=["admin", "command"]) == [str(two.id), str(three.id)]
    assert ids(channel="api", new_status="completed") == []


@pytest.mark.parametrize(
    "params, loc, error_type",
    [
        ({"after": "not a cursor"}, "after", "cursor_invalid"),
        ({"after": ""}, "after", "empty"),
        ({"after": "LTEuMQ"}, "after", "cursor_invalid"),  # "-1.1"
        ({"after": "OTIyMzM3MjAzNjg1NDc3NTgwOC4x"}, "after", "cursor_invalid"),  # 2**63, past bigint
        ({"after": "MS4yLjM"}, "after", "cursor_invalid"),  # "1.2.3"
        ({"page_size": "0"}, "page_size", "greater_than_equal"),
        ({"page_size": "501"}, "page_size", "less_than_equal"),
        ({"execution_id": "nope"}, "execution_id", "invalid"),
        ({"execution_id": ""}, "execution_id", "empty"),
        ({"new_status": "running,nope"}, "new_status", "invalid_choice"),
        ({"channel": "email"}, "channel", "invalid_choice"),
        ({"cursor": "MC4x"}, "cursor", "extra_forbidden"),  # the list's parameter, not the feed's
    ],
)
def test_bad_query_strings_are_a_422_located_in_the_query(owner_client, params, loc, error_type):
    response = owner_client.get(FEED, params)
    assert response.status_code == 422, response.content
    assert [(item["loc"], item["type"]) for item in response.json()["detail"]] == [
        (["query", loc], error_type)
    ]


@pytest.mark.parametrize(
    "query",
    [
        "after=" + "A" * 10000,
        "after=%F0%9F%92%A9",
        "after=%00",
        "after=" + base64.urlsafe_b64encode(("9" * 40 + ".1").encode()).decode(),
        "after=" + base64.urlsafe_b64encode("\u0661.\u0661".encode()).decode(),  # Arabic-Indic digits
        "execution_id=%00",
        "new_status=%00",
        "channel=" + ",".join(["api"] * 1000),
        "page_size=1e3",
        "after=MC4x&after=%00",
    ],
)
def test_hostile_query_strings_are_never_a_server_error(owner_client, query):
    response = owner_client.get(f"{FEED}?{query}")
    assert response.status_code in (200, 422), response.content
    assert response["Content-Type"] == "application/json"
    if response.status_code == 422:
        assert all(item["loc"][0] == "query" for item in response.json()["detail"])


def test_every_write_path_feeds_the_feed(owner, owner_client):
    """One change (the single service's INSERT), bulk changes with one error_info for all and
    with none, and a bulk change whose error_info the database computes, one row per batch:
    every record is served once, in write order."""
    single, *rest = [ExecutionFactory(created_by=owner) for _ in range(7)]
    change(single)

    def bulk(executions, **options):
        execution_change_status_bulk(
            executions=Execution.objects.filter(pk__in=[e.id for e in executions]), **options
        )

    bulk(rest[:2], status=ExecutionStatus.CANCELLED, channel=ChangeChannel.ADMIN, error_info={"why": "admin"})
    bulk(rest[2:4], status=ExecutionStatus.FAILED, channel=ChangeChannel.ADMIN)
    bulk(
        rest[4:],
        status=ExecutionStatus.INTERRUPTED,
        channel=ChangeChannel.COMMAND,
        error_info=JSONObject(why=Value("stale")),
        batch_size=1,
    )

    items, _ = read_all(owner_client, page_size=3)

    # Within a bulk change, in id order (the order its batches walk).
    by_id = lambda executions: sorted(executions, key=lambda e: e.id)  # noqa: E731
    expected_order = [single, *by_id(rest[:2]), *by_id(rest[2:4]), *by_id(rest[4:])]
    assert [item["execution_id"] for item in items] == [str(e.id) for e in expected_order]
    assert [item["new_status"] for item in items] == ["cancelled"] * 3 + ["failed"] * 2 + ["interrupted"] * 2
    assert items[5]["error_info"] == {"why": "stale"}
    if connection.vendor == "postgresql":
        # The database stamped each record with its writing transaction: one per batch.
        by_execution = dict(ExecutionStatusChange.objects.values_list("execution_id", "transaction_id"))
        batches = [[single], rest[:2], rest[2:4], by_id(rest[4:])[:1], by_id(rest[4:])[1:]]
        stamps = [{by_execution[e.id] for e in batch} for batch in batches]
        assert all(len(stamp) == 1 for stamp in stamps)
        assert len(set.union(*stamps)) == len(batches)
        assert min(by_execution.values()) > 0


# --- PostgreSQL: transactions that commit out of order -------------------------------------


class HeldTransaction:
    """A thread with its own database connection that runs `steps` one at a time inside
    one transaction, each when the test says `next()`, and commits after the last."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.steps_run = 0
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.error = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        try:
            with transaction.atomic():
                for step in self.steps:
                    self._wait(self.go)
                    step()
                    self.done.release()
                self._wait(self.go)  # the commit, when the test says so
        except BaseException as exc:  # reported by next()
            self.error = exc
            self.done.release()
        else:
            self.done.release()
        finally:
            connection.close()

    @staticmethod
    def _wait(semaphore):
        if not semaphore.acquire(timeout=STEP_TIMEOUT):
            raise TimeoutError("the other side never came")

    def next(self):
        """Run the next step (or, after the last, commit) and wait until it is done."""
        self.go.release()
        self._wait(self.done)
        self.steps_run += 1
        if self.error is not None:
            raise self.error

    def commit(self):
        """Run the steps not run yet, then commit."""
        while self.steps_run <= len(self.steps):
            self.next()
        self.thread.join()


@pytest.fixture
def feed_consumer(live_server):
    """Poll the live server's feed as a client would: keep the cursor, collect the items."""
    port = urlsplit(live_server.url).port
    operator = UserFactory(username="consumer", is_superuser=True)
    headers = {"Authorization": f"Token {api_key_for(operator)}"}

    class Consumer:
        def __init__(self):
            self.cursor = None
            self.seen: list[str] = []

        def poll(self):
            while True:
                path = FEED if self.cursor is None else f"{FEED}?after={self.cursor}"
                code, _, body = request(port, "GET", path, None, headers)
                assert code == 200, body
                self.seen += [f"{item['execution_id']}:{item['new_status']}" for item in body["results"]]
                self.cursor = body["next_cursor"]
                if not body["has_more"]:
                    return

    return Consumer()


def label(execution, status):
    return f"{execution.id}:{status}"


@pytest.mark.slow
@pytest.mark.postgres_only
def test_a_change_committed_after_later_ones_were_served_is_not_skipped(feed_consumer):
    """The held change takes the smaller id, others commit meanwhile and the consumer polls
    in between: when the held one commits, the consumer gets it, and nothing twice."""
    owner = UserFactory(username="worker")
    held_execution = ExecutionFactory(created_by=owner)
    others = [ExecutionFactory(created_by=owner) for _ in range(3)]
    held = HeldTransaction(lambda: change(held_execution, ExecutionStatus.FAILED))
    held.next()  # the held change is written, not committed
    for execution in others:
        change(execution)
        feed_consumer.poll()
    held.commit()
    feed_consumer.poll()
    assert ExecutionStatusChange.objects.get(execution=held_execution).id < min(
        ExecutionStatusChange.objects.filter(execution__in=others).values_list("id", flat=True)
    )
    assert sorted(feed_consumer.seen) == sorted(
        [label(held_execution, "failed"), *(label(e, "cancelled") for e in others)]
    )
    assert len(feed_consumer.seen) == len(set(feed_consumer.seen))


@pytest.mark.slow
@pytest.mark.postgres_only
def test_an_older_transaction_that_writes_a_larger_id_does_not_hide_a_younger_one(feed_consumer):
    """The case that serving by id below the oldest running transaction gets wrong: an old
    transaction (it took its transaction id first, e.g. by locking a batch) writes its
    record after a younger, still open one wrote its own, so the old one's record has the
    larger id but is committed first and served; the young one's, with the smaller id,
    must still be served when it commits."""
    owner = UserFactory(username="worker")
    old_execution, young_execution = ExecutionFactory(created_by=owner), ExecutionFactory(created_by=owner)

    def take_a_transaction_id():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()")

    old = HeldTransaction(take_a_transaction_id, lambda: change(old_execution, ExecutionStatus.COMPLETED))
    old.next()  # the old transaction has its id
    young = HeldTransaction(lambda: change(young_execution, ExecutionStatus.FAILED))
    young.next()  # the young one wrote its record (the smaller id), still open
    old.commit()  # the old one writes its record (the larger id) and commits
    feed_consumer.poll()
    young.commit()
    feed_consumer.poll()

    young_record = ExecutionStatusChange.objects.get(execution=young_execution)
    old_record = ExecutionStatusChange.objects.get(execution=old_execution)
    assert young_record.id < old_record.id and young_record.transaction_id > old_record.transaction_id
    assert feed_consumer.seen == [label(old_execution, "completed"), label(young_execution, "failed")]


@pytest.mark.slow
@pytest.mark.postgres_only
def test_a_rolled_back_change_is_never_served_and_holds_nothing_up(feed_consumer):
    owner = UserFactory(username="worker")
    doomed, kept = ExecutionFactory(created_by=owner), ExecutionFactory(created_by=owner)

    def change_then_fail():
        change(doomed)
        raise RuntimeError("rolled back")

    held = HeldTransaction(change_then_fail)
    with pytest.raises(RuntimeError):
        held.next()
    held.thread.join()
    change(kept)
    feed_consumer.poll()
    assert feed_consumer.seen == [label(kept, "cancelled")]
    assert not ExecutionStatusChange.objects.filter(execution=doomed).exists()


@pytest.mark.parametrize(
    "error_info",
    [
        {"log": "y" * (MAX_JSON_OBJECT_BYTES - 20)},
        # 16 KiB in UTF-8, 48 KiB as sent (each emoji a 12-byte escape): counted as
        # PostgreSQL's characters, pages of 3 MB.
        {"log": "\U0001f600" * 4094},
    ],
    ids=["ascii", "emoji"],
)
def test_a_page_ends_early_at_its_byte_budget_and_the_next_pages_have_the_rest(
    owner, owner_client, error_info
):
    # Each error_info as large as the API takes: 70 of them are more than one page's budget.
    executions = ExecutionFactory.create_batch(70, created_by=owner)
    for execution in executions:
        execution_change_status(
            execution_id=execution.id,
            status=ExecutionStatus.FAILED,
            channel=ChangeChannel.API,
            error_info=error_info,
        )

    first = owner_client.get(FEED, {"page_size": 500})
    items, _ = read_all(owner_client, page_size=500)

    assert 0 < len(first.json()["results"]) < 70 and first.json()["has_more"]
    assert MAX_PAGE_BYTES * 0.9 < len(first.content) <= MAX_PAGE_BYTES
    assert sorted(item["execution_id"] for item in items) == sorted(str(e.id) for e in executions)
