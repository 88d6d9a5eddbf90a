"""Checking that a webhook came from the service: `verify_webhook`, as the Standard Webhooks
specification (standardwebhooks.com) says a receiver checks one.

The service signs `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 under the
endpoint's secret and sends `webhook-signature: v1,<base64>`; while a rotated secret is still
valid it sends one signature per secret, separated by spaces. A receiver recomputes the
signature from the body exactly as received (before any JSON parsing), compares in constant
time, and refuses a timestamp too far from its own clock, so that a captured request cannot be
replayed days later. A message may arrive more than once (at-least-once delivery, a replay):
`webhook-id` is the same on every try, so a receiver de-duplicates on it.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .errors import ExecutionsError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# How far a message's timestamp may be from the receiver's clock, either way.
DEFAULT_TOLERANCE = timedelta(minutes=5)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class WebhookVerificationError(ExecutionsError):
    """The request is not a webhook the service signed with this secret (or it is too old or
    too new): answer it 4xx and do nothing with its body."""


def _secret_key(secret: str | bytes) -> bytes:
    """The HMAC key: the bytes after `whsec_` (base64) in the secret the API showed, the same
    base64 without the prefix, or the raw key bytes."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The secret is not whsec_ followed by base64, nor raw bytes") from None
    if not key:
        raise ValueError("The secret is empty")
    return key


def _header(headers: Mapping[str, str], name: str) -> str:
    # Any mapping: a dict as a framework gives it (any case), httpx's or Django's headers.
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"Missing header {name}")


def webhook_signature(secret: str | bytes, message_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,<base64>` signature of one message under `secret`, as the service sends it."""
    if isinstance(body, str):
        body = body.encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | bytes,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check a webhook request and return its JSON body, parsed.

    `headers` are the request's (any mapping, names in any case), `body` its raw bytes exactly
    as received (a str is taken as its UTF-8 encoding), `secret` the endpoint's secret as the
    API showed it (`whsec_...`), or the raw key bytes. Raises WebhookVerificationError when a
    header is missing or malformed, the timestamp is more than `tolerance` from `now` (the
    receiver's clock, seconds since the epoch), or no signature in `webhook-signature` matches
    (any one matching is enough: during a rotation the service signs with the old and the new
    secret). ValueError for a secret that is not one.
    """
    key_check = _secret_key(secret)  # a wrong secret is the caller's bug: ValueError, before anything
    message_id = _header(headers, ID_HEADER)
    timestamp_text = _header(headers, TIMESTAMP_HEADER).strip()
    signatures = _header(headers, SIGNATURE_HEADER)
    if not message_id or any(char in message_id for char in " ,\r\n"):
        raise WebhookVerificationError(f"Invalid {ID_HEADER}")
    if not (timestamp_text.isascii() and timestamp_text.isdigit()):
        raise WebhookVerificationError(f"Invalid {TIMESTAMP_HEADER}: not whole seconds since the epoch")
    timestamp = int(timestamp_text)
    current = time.time() if now is None else now
    if timestamp < current - tolerance.total_seconds():
        raise WebhookVerificationError("Message timestamp too old")
    if timestamp > current + tolerance.total_seconds():
        raise WebhookVerificationError("Message timestamp too new")

    expected = webhook_signature(key_check, message_id, timestamp, body).encode()
    matched = False
    for candidate in signatures.split(" "):
        # Every candidate is compared, in constant time: how long the check takes says nothing
        # about which one matched or how much of one did.
        version, _, _ = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(expected, candidate.encode()):
            matched = True
    if not matched:
        raise WebhookVerificationError("No matching signature found")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookVerificationError("The body is not JSON") from None
