"""Standard Webhooks signatures (https://www.standardwebhooks.com/): the secrets, the
message ids and the `webhook-signature` header."""

import base64
import hashlib
import hmac
import secrets

from .ids import uuid7

SECRET_PREFIX = "whsec_"
# The spec allows 24 to 64 bytes of key; 32 is what HMAC-SHA256 uses in full.
SECRET_BYTES = 32


def new_signing_secret() -> str:
    """A new signing secret: "whsec_" and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_webhook_id() -> str:
    """A new message id for the `webhook-id` header: "msg_" and a time-ordered UUID."""
    return f"msg_{uuid7().hex}"


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One signature, "v1,<base64 of HMAC-SHA256(key, id.timestamp.body)>"."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_in_use: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per secret in use, space-separated
    (during a rotation, the new secret's and the previous one's)."""
    return " ".join(sign(secret, webhook_id, timestamp, body) for secret in secrets_in_use)
