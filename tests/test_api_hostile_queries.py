"""Query strings nobody should send: each gets a clear 4xx (or an ordinary page), never a 500."""

import base64

import pytest

from .api import UNKNOWN_EXECUTION_ID

URL = "/api/v1/executions"


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "name=%00",
        "name_contains=%00",
        "name=" + "x" * 5000,
        "name_contains=%25_%5C",
        "created_after=0001-01-01T00:00:00-23:59",
        "created_before=9999-12-31T23:59:59%2B23:59",
        "updated_after=9999-12-31T23:59:59.999999-23:59",
        "created_after=1-1-1",
        "status=%00",
        "status=" + ",".join(["running"] * 1000),
        "stale=TRUE",
        f"cursor={_cursor('0001-01-01T00:00:00-23:59|' + UNKNOWN_EXECUTION_ID)}",
        f"cursor={_cursor('9999-12-31T23:59:59+23:59|' + UNKNOWN_EXECUTION_ID)}",
        f"cursor={_cursor('2026-01-01T00:00:00+00:00|' + UNKNOWN_EXECUTION_ID + '|x')}",
        "cursor=" + "A" * 10000,
        "cursor=%F0%9F%92%A9",
        "page_size=1.5",
        "page_size=1e3",
        "page_size=%00",
    ],
)
def test_hostile_query_strings_are_never_a_server_error(owner_client, query):
    response = owner_client.get(f"{URL}?{query}")
    assert response.status_code in (200, 422), response.content
    assert response["Content-Type"] == "application/json"
    if response.status_code == 422:
        assert all(item["loc"][0] == "query" for item in response.json()["detail"])


@pytest.mark.parametrize(
    "query, matches",
    [
        # Valid ISO 8601 whose UTC is in year 0 or 10000: read as the edge of years 1-9999.
        ("created_after=0001-01-01T01:00:00%2B19:52", True),
        ("created_before=0001-01-01T01:00:00%2B19:52", False),
        ("created_after=9999-12-31T23:00:00-19:52", False),
        ("created_before=9999-12-31T23:00:00-19:52", True),
    ],
)
def test_a_time_beyond_years_1_to_9999_in_utc_filters_as_the_edge_of_that_range(
    owner_client, running_execution, query, matches
):
    response = owner_client.get(f"{URL}?{query}")
    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == (
        [str(running_execution.id)] if matches else []
    )
