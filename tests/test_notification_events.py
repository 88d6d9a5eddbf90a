"""What a message says: the event data, its size limit, and the texts people read (Slack,
email)."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from executions.notifications.events import MAX_BODY_BYTES, body_bytes, execution_event_data
from executions.notifications.transports import email_subject_and_text, slack_text

EXECUTION_ID = uuid.UUID("01a245d1-d37e-7447-830e-007d8af3c487")
CHANGED_AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def data(**overrides):
    fields = {
        "execution_id": EXECUTION_ID,
        "name": "nightly-report",
        "owner": "alice",
        "metadata": {"shard": 3},
        "change_id": 42,
        "previous_status": "running",
        "current_status": "failed",
        "error_info": {"reason": "exit code 2"},
        "actor": "alice",
        "channel": "api",
        "correlation_id": "req-1",
        "changed_at": CHANGED_AT,
    }
    return execution_event_data(**{**fields, **overrides})


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.EXECUTIONS_PUBLIC_URL = "https://runs.example.com/"


def test_the_data_of_an_execution_event():
    assert data() == {
        "id": str(EXECUTION_ID),
        "name": "nightly-report",
        "owner": "alice",
        "previous_status": "running",
        "current_status": "failed",
        "error_info": {"reason": "exit code 2"},
        "metadata": {"shard": 3},
        "actor": "alice",
        "channel": "api",
        "correlation_id": "req-1",
        "changed_at": "2026-12-05T10:00:00+00:00",
        "change_id": 42,
        "links": {
            "execution": f"https://runs.example.com/api/v1/executions/{EXECUTION_ID}",
            "history": f"https://runs.example.com/api/v1/executions/{EXECUTION_ID}/history",
            "admin": f"https://runs.example.com/admin/executions/execution/{EXECUTION_ID}/change/",
        },
        "truncated": [],
    }


def test_the_body_is_type_timestamp_and_data():
    body = json.loads(body_bytes("execution.failed", CHANGED_AT, data()))
    assert body == {"type": "execution.failed", "timestamp": "2026-12-05T10:00:00+00:00", "data": data()}


@pytest.mark.parametrize(
    ("error_info", "metadata", "truncated"),
    [
        ({"log": "x" * 250_000}, {"shard": 3}, ["error_info"]),
        ({"reason": "short"}, {"blob": ["y" * 100] * 2000}, ["metadata"]),
        ({"log": "x" * 25_000}, {"blob": "y" * 25_000}, ["error_info", "metadata"]),
        ({"log": "x" * 12_000}, {"blob": "y" * 11_000}, ["error_info"]),  # the larger goes first
        # Escaped text is counted as sent: 4,000 characters that each take 6 bytes.
        ({"log": "\u2603" * 4_000}, {}, ["error_info"]),
    ],
)
def test_the_body_stays_under_20_kb_whatever_the_execution_holds(error_info, metadata, truncated):
    event = data(error_info=error_info, metadata=metadata, name="n" * 200, correlation_id="c" * 128)
    body = body_bytes("execution.failed", CHANGED_AT, event)
    assert len(body) <= MAX_BODY_BYTES
    sent = json.loads(body)["data"]
    assert sorted(sent["truncated"]) == truncated
    assert all(sent[field] is None for field in truncated)
    assert sent["name"] == "n" * 200 and sent["links"]["execution"].endswith(str(EXECUTION_ID))


def test_any_text_survives_the_body_lone_surrogates_included():
    event = data(metadata={"odd": "\ud800", "snow": "\u2603"})
    body = body_bytes("execution.failed", CHANGED_AT, event)
    assert body.isascii()
    assert json.loads(body)["data"]["metadata"] == {"odd": "\ud800", "snow": "\u2603"}


def test_the_email_reads_as_a_sentence_with_the_links():
    subject, text = email_subject_and_text("execution.failed", data())
    assert subject == '[executions] Execution "nightly-report" failed (was running, by alice through api)'
    assert 'Execution "nightly-report" failed (was running, by alice through api).' in text
    assert '"reason": "exit code 2"' in text
    assert f"Execution: https://runs.example.com/api/v1/executions/{EXECUTION_ID}" in text
    assert f"Admin: https://runs.example.com/admin/executions/execution/{EXECUTION_ID}/change/" in text


def test_a_name_with_a_newline_cannot_add_a_mail_header():
    subject, _ = email_subject_and_text("execution.failed", data(name="x\nBcc: evil@example.com"))
    assert "\n" not in subject


def test_a_truncated_event_says_so_in_the_email():
    _, text = email_subject_and_text("execution.failed", data(error_info={"log": "x" * 250_000}))
    assert "Too large to include: error_info" in text


def test_the_slack_text_escapes_slacks_markup_and_links_the_record():
    text = slack_text("execution.failed", data(name="<!channel> & co", actor=None))
    assert text.startswith('Execution "&lt;!channel&gt; &amp; co" failed (was running, by the system')
    assert f"<https://runs.example.com/api/v1/executions/{EXECUTION_ID}|execution>" in text
