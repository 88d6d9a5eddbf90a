"""Standard Webhooks signatures, checked against the specification's reference library."""

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from executions.webhook_signing import new_signing_secret, new_webhook_id, sign, signature_header

BODY = b'{"type":"execution.failed","timestamp":"2026-12-05T10:00:00+00:00","data":{"id":"x"}}'


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes():
    secrets = {new_signing_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_message_ids_are_msg_and_unique_in_creation_order():
    ids = [new_webhook_id() for _ in range(1000)]
    assert all(webhook_id.startswith("msg_") for webhook_id in ids)
    assert ids == sorted(set(ids))


def test_a_signature_is_the_one_the_reference_library_makes():
    secret, timestamp = new_signing_secret(), 1_796_467_709
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(timestamp, UTC), BODY)
    assert sign(secret, "msg_1", timestamp, BODY) == expected


def headers(webhook_id, timestamp, signatures):
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def test_during_a_rotation_the_reference_library_verifies_with_either_secret():
    old, new = new_signing_secret(), new_signing_secret()
    timestamp = int(datetime.now(UTC).timestamp())
    header = signature_header([new, old], "msg_2", timestamp, BODY)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(BODY, headers("msg_2", timestamp, header))["data"] == {"id": "x"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(BODY, headers("msg_2", timestamp, header))


@pytest.mark.parametrize(
    "tampered",
    [
        {"body": BODY.replace(b"failed", b"completed")},
        {"webhook_id": "msg_3"},
        {"timestamp_offset": 1},
    ],
)
def test_a_changed_body_id_or_timestamp_fails_verification(tampered):
    secret = new_signing_secret()
    timestamp = int(datetime.now(UTC).timestamp())
    header = signature_header([secret], "msg_2", timestamp, BODY)
    sent = headers(
        tampered.get("webhook_id", "msg_2"), timestamp + tampered.get("timestamp_offset", 0), header
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered.get("body", BODY), sent)
