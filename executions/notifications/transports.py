"""The transports: how one message reaches one endpoint. Each is one small function of
plain values (no database), run in the delivery's thread pool; HTTP goes through
`http_post`, email through Django's email backend, so a transport's test replaces one thing.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime

import urllib3
from django.core.mail import EmailMessage

from ..models import RESPONSE_BODY_KEPT_BYTES, EndpointKind, EventType
from ..webhook_signing import signature_header
from .events import body_bytes
from .ssrf import TargetRefused, public_only_pool_manager

# Standard Webhooks' suggestion, and the issue's: an answer takes at most this long.
REQUEST_TIMEOUT_SECONDS = 15.0
USER_AGENT = "executions-notifications/1"


@dataclass(frozen=True)
class Outgoing:
    """One message to send, as plain values read in the worker's main thread."""

    message_id: int
    webhook_id: str
    event_type: str
    occurred_at: datetime
    payload: dict
    endpoint_id: object
    kind: str
    url: str
    emails: tuple[str, ...]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """What one attempt got: whether it succeeded, the HTTP status (None without an HTTP
    answer), the first 1 KB of the answer, why it failed, Retry-After, how long it took."""

    succeeded: bool
    status_code: int | None = None
    body: str = ""
    error: str = ""
    retry_after: str | None = None
    latency_ms: int = 0


def new_http_client(max_connections: int) -> urllib3.PoolManager:
    """The pooled client the delivery shares between its threads: public addresses only
    (ssrf.public_only_pool_manager), no redirects, no retries of its own, 15 s timeouts,
    up to `max_connections` kept per receiver. urllib3 rather than httpx here: with the
    delivery's 64 threads urllib3 sent 2,600 requests/s and httpx 460 (its pool's locking;
    docs/dependencies.md)."""
    return public_only_pool_manager(
        num_pools=256,
        maxsize=max_connections,
        retries=False,
        timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT_SECONDS, read=REQUEST_TIMEOUT_SECONDS),
        headers={"user-agent": USER_AGENT},
    )


def http_post(client: urllib3.PoolManager, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url`; the answer's status and its first 1 KB (the rest is never read:
    the connection is closed instead of drained)."""
    started = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        response = client.request(
            "POST",
            url,
            body=body,
            headers={**client.headers, "content-type": "application/json", **headers},
            redirect=False,
            preload_content=False,
        )
        try:
            kept = response.read(RESPONSE_BODY_KEPT_BYTES + 1, decode_content=False)
            if len(kept) > RESPONSE_BODY_KEPT_BYTES:
                response.close()  # more than we keep: never read the rest, drop the connection
        finally:
            response.release_conn()
    except TargetRefused as refused:
        return Answer(False, error=f"refused: {refused}", latency_ms=took())
    except urllib3.exceptions.NewConnectionError as failure:  # a TimeoutError to urllib3, for history
        return Answer(False, error=f"{type(failure).__name__}: {failure}"[:500], latency_ms=took())
    except urllib3.exceptions.TimeoutError:
        return Answer(False, error=f"timed out after {REQUEST_TIMEOUT_SECONDS:g} s", latency_ms=took())
    except (urllib3.exceptions.HTTPError, OSError) as failure:
        return Answer(False, error=f"{type(failure).__name__}: {failure}"[:500], latency_ms=took())
    # Only 2xx: a redirect is a failure, never followed (it could lead anywhere).
    succeeded = 200 <= response.status < 300
    return Answer(
        succeeded,
        response.status,
        kept[:RESPONSE_BODY_KEPT_BYTES].decode("utf-8", errors="replace"),
        "" if succeeded else f"HTTP {response.status}",
        response.headers.get("retry-after"),
        took(),
    )


def send_webhook(client: urllib3.PoolManager, outgoing: Outgoing, now: float | None = None) -> Answer:
    """A Standard Webhooks POST: the body, and its id, timestamp and signatures."""
    body = body_bytes(outgoing.event_type, outgoing.occurred_at, outgoing.payload)
    timestamp = int(now if now is not None else time.time())
    headers = {
        "webhook-id": outgoing.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(list(outgoing.secrets), outgoing.webhook_id, timestamp, body),
    }
    return http_post(client, outgoing.url, body, headers)


def send_slack(client: urllib3.PoolManager, outgoing: Outgoing) -> Answer:
    """A Slack incoming webhook's JSON: a readable line and a link (Slack's `text`, with
    `blocks` for the formatted form)."""
    text = slack_text(outgoing.event_type, outgoing.payload)
    body = json.dumps(
        {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]},
        ensure_ascii=True,
    ).encode()
    return http_post(client, outgoing.url, body, {})


def send_email(outgoing: Outgoing) -> Answer:
    """A plain-text email to the endpoint's addresses, through Django's email backend."""
    subject, text = email_subject_and_text(outgoing.event_type, outgoing.payload)
    started = time.monotonic()
    try:
        EmailMessage(subject, text, to=list(outgoing.emails)).send()
    except Exception as failure:  # an SMTP server's refusal, a socket error, a bad address...
        error = f"{type(failure).__name__}: {failure}"[:500]
        return Answer(False, error=error, latency_ms=round((time.monotonic() - started) * 1000))
    return Answer(True, latency_ms=round((time.monotonic() - started) * 1000))


def send(client: urllib3.PoolManager, outgoing: Outgoing) -> Answer:
    """Send `outgoing` by its endpoint's transport."""
    if outgoing.kind == EndpointKind.WEBHOOK:
        return send_webhook(client, outgoing)
    if outgoing.kind == EndpointKind.SLACK:
        return send_slack(client, outgoing)
    return send_email(outgoing)


# --- What a person reads -------------------------------------------------------------------


def headline(event_type: str, data: dict) -> str:
    """One line that says what happened."""
    if event_type.startswith("execution."):
        return (
            f'Execution "{data["name"]}" {data["current_status"]}'
            f" (was {data['previous_status']}, by {data.get('actor') or 'the system'}"
            f" through {data['channel']})"
        )
    if event_type.startswith("monitor."):
        reason = f", {data['reason']}" if data.get("reason") else ""
        return f'Monitor "{data["name"]}" is {data["current_state"]}{reason}'
    if event_type == EventType.TEST:
        return "Test notification: this endpoint receives notifications from the executions service"
    return event_type


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reads these three as markup (its "Formatting text" guide).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event_type: str, data: dict) -> str:
    lines = [_slack_escape(headline(event_type, data))]
    if data.get("error_info"):
        error_info = json.dumps(data["error_info"], ensure_ascii=False)
        lines.append(f"Why: `{_slack_escape(error_info[:500])}`")
    links = data.get("links") or {}
    if links:
        lines.append(" · ".join(f"<{url}|{name}>" for name, url in links.items()))
    return "\n".join(lines)


def email_subject_and_text(event_type: str, data: dict) -> tuple[str, str]:
    subject = "[executions] " + headline(event_type, data)
    lines = [headline(event_type, data) + ".", ""]
    when = data.get("changed_at")
    if when:
        lines.append(f"When: {when}")
    if data.get("correlation_id"):
        lines.append(f"Correlation id: {data['correlation_id']}")
    if data.get("error_info"):
        lines += ["Why:", json.dumps(data["error_info"], indent=2, ensure_ascii=False)[:4000]]
    if data.get("truncated"):
        lines.append(f"(Too large to include: {', '.join(data['truncated'])}; see the full record.)")
    links = data.get("links") or {}
    if links:
        lines += ["", *(f"{name.capitalize()}: {url}" for name, url in links.items())]
    # Subjects are one line: a newline in a name would be a header injection.
    return " ".join(subject.split())[:200], "\n".join(lines) + "\n"
