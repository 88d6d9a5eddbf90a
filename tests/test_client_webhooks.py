"""The client's `verify_webhook` against the Standard Webhooks reference library
(`standardwebhooks`): it accepts what the reference signs and refuses what the reference
refuses, with whsec_ and raw secrets, several signatures (a rotation), and a 5-minute window."""

import base64
import hmac
import json
import random
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from executions_client import WebhookVerificationError, verify_webhook, webhook_signature
from executions_client import webhooks as webhooks_module
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as ReferenceError

BODY = json.dumps({"type": "execution.failed", "timestamp": "2026-12-05T10:00:00Z", "data": {"id": "x"}})


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret, body=BODY, message_id="msg_1", at=None, signatures=None) -> dict:
    """Headers as the reference library signs them (the sender's side of the spec)."""
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, at, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures or [signature]),
    }


def both_refuse(headers, body, secret):
    """The reference library and verify_webhook both refuse this request."""
    with pytest.raises(ReferenceError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, secret)


def test_what_the_reference_signs_verifies_and_the_body_comes_back_parsed():
    secret = new_secret()
    headers = signed_headers(secret)
    assert verify_webhook(headers, BODY.encode(), secret) == json.loads(BODY)
    assert verify_webhook(headers, BODY, secret) == Webhook(secret).verify(BODY, headers)


def test_the_signature_is_the_references_for_any_body_id_and_time():
    rng = random.Random(20261205)
    for _ in range(200):
        secret = rng.randbytes(rng.randint(24, 64))
        body = rng.randbytes(rng.randint(0, 2000))
        message_id = f"msg_{rng.getrandbits(64):x}"
        timestamp = rng.randint(0, 2**33)
        at = datetime.fromtimestamp(timestamp, UTC)
        reference = Webhook(secret).sign(message_id, at, body)
        assert webhook_signature(secret, message_id, timestamp, body) == reference


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda raw: "whsec_" + base64.b64encode(raw).decode(), id="whsec_"),
        pytest.param(lambda raw: base64.b64encode(raw).decode(), id="base64 without the prefix"),
        pytest.param(lambda raw: "whsec_" + base64.b64encode(raw).decode().rstrip("="), id="unpadded"),
        pytest.param(lambda raw: raw, id="raw bytes"),
    ],
)
def test_every_form_of_the_secret_verifies(form):
    raw = secrets.token_bytes(25)  # not a multiple of 3: base64 with padding
    headers = signed_headers(raw)
    assert verify_webhook(headers, BODY, form(raw)) == json.loads(BODY)


def test_during_a_rotation_either_secret_verifies_and_a_third_does_not():
    old, new = new_secret(), new_secret()
    at = datetime.now(UTC)
    signatures = [Webhook(new).sign("msg_r", at, BODY), Webhook(old).sign("msg_r", at, BODY)]
    headers = signed_headers(new, message_id="msg_r", at=at, signatures=signatures)
    for secret in (old, new):
        assert verify_webhook(headers, BODY, secret) == Webhook(secret).verify(BODY, headers)
    both_refuse(headers, BODY, new_secret())


def test_every_signature_is_compared_in_constant_time(monkeypatch):
    compared = []
    compare_digest = hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return compare_digest(a, b)

    monkeypatch.setattr(webhooks_module.hmac, "compare_digest", spy)
    secret = new_secret()
    good = signed_headers(secret)["webhook-signature"]
    headers = signed_headers(secret, signatures=[good, "v1,AAAA", "v1,BBBB"])
    verify_webhook(headers, BODY, secret)
    # The matching one came first; the two after it were compared all the same.
    assert compared == [good.encode(), b"v1,AAAA", b"v1,BBBB"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b.replace("failed", "Failed")), id="body changed"),
        pytest.param(lambda h, b: (h, b + " "), id="a byte added"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="another id"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            id="another timestamp",
        ),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,"}, b), id="empty signature"),
        pytest.param(
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
            id="unknown version",
        ),
        pytest.param(lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), id="no id"),
        pytest.param(
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), id="no signature"
        ),
        pytest.param(
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b), id="no timestamp"
        ),
        pytest.param(lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), id="timestamp not a number"),
    ],
)
def test_a_tampered_or_incomplete_request_is_refused_as_the_reference_refuses_it(tamper):
    secret = new_secret()
    headers, body = tamper(signed_headers(secret), BODY)
    both_refuse(headers, body, secret)


@pytest.mark.parametrize("minutes", [-10, 10])
def test_a_timestamp_ten_minutes_off_is_refused_as_the_reference_refuses_it(minutes):
    secret = new_secret()
    headers = signed_headers(secret, at=datetime.now(UTC) + timedelta(minutes=minutes))
    both_refuse(headers, BODY, secret)


def test_the_window_is_five_minutes_either_way():
    secret = new_secret()
    now = 1_800_000_000
    headers = signed_headers(secret, at=datetime.fromtimestamp(now, UTC))
    for offset in (-300, 0, 300):
        assert verify_webhook(headers, BODY, secret, now=now + offset)
    for offset in (-301, 301):
        with pytest.raises(WebhookVerificationError, match="too (old|new)"):
            verify_webhook(headers, BODY, secret, now=now + offset)
    assert verify_webhook(headers, BODY, secret, now=now + 3600, tolerance=timedelta(hours=2))


def test_header_names_in_any_case_and_any_mapping():
    secret = new_secret()
    headers = signed_headers(secret)
    shouting = {name.upper(): value for name, value in headers.items()}
    assert verify_webhook(shouting, BODY, secret) == json.loads(BODY)
    assert verify_webhook(httpx.Headers(headers), BODY, secret) == json.loads(BODY)


def test_a_signed_body_that_is_not_json_is_refused():
    secret = new_secret()
    body = b"\xff not json"
    headers = signed_headers(secret, body=body)
    Webhook(secret).verify(body, headers, json_parse=False)  # the signature itself is good
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify_webhook(headers, body, secret)


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!", b""])
def test_a_secret_that_is_not_one_is_the_callers_error(secret):
    headers = signed_headers(new_secret())
    with pytest.raises(ValueError):
        verify_webhook(headers, BODY, secret)
