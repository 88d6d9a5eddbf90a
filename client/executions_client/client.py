"""`ExecutionsClient`: one method per operation of the executions API.

Every call is retried, with exponential backoff, when the service cannot be reached or
answers 503 (its database is away) or 429 (rate limited), waiting what `Retry-After` asks
for where it says. Retrying is safe for every operation: `create` sends an Idempotency-Key
(the same one on every try), a status change asked for twice answers `success: false` the
second time, and a heartbeat sent twice is a heartbeat.
"""

import email.utils
import logging
import os
import random
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from .errors import ConfigurationError, ServiceUnavailableError, error_for
from .models import (
    Execution,
    ExecutionPage,
    Heartbeat,
    NotificationDelivery,
    NotificationDeliveryPage,
    NotificationEndpoint,
    NotificationEndpointPage,
    StatusChange,
    StatusChangePage,
    StatusUpdate,
)

logger = logging.getLogger("executions_client")

URL_VARIABLE = "EXECUTIONS_URL"
TOKEN_VARIABLE = "EXECUTIONS_TOKEN"
API_PREFIX = "/api/v1"

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_FOR = 30.0
# Backoff between tries: 0.5 s, 1 s, 2 s, ... each with up to half of it added at random (so
# that many clients turned away at once do not come back at once), at most MAX_RETRY_WAIT.
FIRST_BACKOFF = 0.5
# No single wait is longer, whatever Retry-After says: a client that waits an hour is a hung client.
MAX_RETRY_WAIT = 30.0
RETRY_STATUSES = frozenset({429, 503})
# Failures where the request may not have reached the service, or its answer did not come
# back whole (a restart closes connections). A wrong URL or scheme is not among them.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# For a request that must not run twice (it has no idempotency key): only failures where it
# certainly never reached the service.
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
# An update's argument left out (None clears a field: it is sent as null).
UNCHANGED: Any = object()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the answer's Retry-After asks for (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _execution_path(execution_id: str) -> str:
    # Quoted whole: an id with "/" or "?" in it names no execution (404), never another URL.
    return f"/executions/{urllib.parse.quote(str(execution_id), safe='')}"


def _one_or_many(value: str | list[str] | None) -> str | None:
    return ",".join(value) if isinstance(value, list) else value


def _time_parameter(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _endpoint_path(endpoint_id: str) -> str:
    return f"/notification-endpoints/{urllib.parse.quote(str(endpoint_id), safe='')}"


def _delivery_path(endpoint_id: str, delivery_id: str) -> str:
    return f"{_endpoint_path(endpoint_id)}/deliveries/{urllib.parse.quote(str(delivery_id), safe='')}"


class ExecutionsClient:
    """A client of the executions service.

    `url` is the service's root (``http://127.0.0.1:8000``), `token` a user's API token; each
    defaults to the EXECUTIONS_URL and EXECUTIONS_TOKEN environment variables. `timeout` is
    per request; `retry_for` is how long, in seconds, one call keeps retrying before it gives
    up with ServiceUnavailableError (0: a single try). `transport` replaces httpx's (e.g.
    httpx.MockTransport in tests).

    Use it as a context manager, or call close(), to release its connections.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_for: float = DEFAULT_RETRY_FOR,
        transport: httpx.BaseTransport | None = None,
    ):
        url = url or os.environ.get(URL_VARIABLE)
        token = token or os.environ.get(TOKEN_VARIABLE)
        if not url:
            raise ConfigurationError(f"No service URL: pass url= or set {URL_VARIABLE}")
        if not token:
            raise ConfigurationError(f"No API token: pass token= or set {TOKEN_VARIABLE}")
        self.url = url.rstrip("/")
        self.retry_for = retry_for
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- executions ------------------------------------------------------------------

    def create(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        max_runtime_seconds: int | None = None,
        idempotency_key: str | None = None,
        monitor: str | None = None,
    ) -> Execution:
        """Create a running execution owned by the caller. With `max_runtime_seconds`, the
        service fails it if it still runs that long after its creation (its heartbeats are
        then answered 409). Idempotent: the request carries `idempotency_key` (a new random
        one when not given), so a retry after a lost answer gets the execution the first try
        created instead of a second one. With `monitor` (a monitor's name), it is a run of
        that monitor: its start."""
        body: dict[str, Any] = {"name": name}
        if metadata is not None:
            body["metadata"] = metadata
        if max_runtime_seconds is not None:
            body["max_runtime_seconds"] = max_runtime_seconds
        if monitor is not None:
            body["monitor"] = monitor
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self._request("POST", "/executions", json=body, headers=headers)
        return Execution.from_json(response.json(), etag=response.headers.get("ETag"))

    def get(self, execution_id: str) -> Execution:
        response = self._request("GET", _execution_path(execution_id))
        return Execution.from_json(response.json(), etag=response.headers.get("ETag"))

    def list_executions(
        self,
        *,
        status: str | list[str] | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        stale: bool | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """One page of the caller's executions (every execution, for managers), newest first."""
        params = {
            "status": _one_or_many(status),
            "name": name,
            "name_contains": name_contains,
            "created_after": _time_parameter(created_after),
            "created_before": _time_parameter(created_before),
            "updated_after": _time_parameter(updated_after),
            "updated_before": _time_parameter(updated_before),
            "stale": None if stale is None else str(stale).lower(),
            "page_size": page_size,
            "cursor": cursor,
        }
        body = self._request("GET", "/executions", params=params).json()
        return ExecutionPage(
            results=[Execution.from_json(item) for item in body["results"]], next_cursor=body["next_cursor"]
        )

    def iter_executions(self, **filters: Any) -> Iterator[Execution]:
        """Every execution list_executions(**filters) finds, page after page."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list_executions(**filters, cursor=cursor)
            yield from page.results
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def update_status(
        self,
        execution_id: str,
        status: str,
        error_info: dict[str, Any] | None = None,
        *,
        if_match: str | None = None,
    ) -> StatusUpdate:
        """Move a running execution to `cancelled`, `failed` (with `error_info`) or
        `completed`. Asking for the status it already has answers `success=False`; any other
        change of a finished execution raises BadRequestError (INVALID_STATUS_TRANSITION).
        With `if_match` (an Execution's etag), raises PreconditionFailedError when it changed since."""
        body: dict[str, Any] = {"status": status}
        if error_info is not None:
            body["error_info"] = error_info
        headers = {"If-Match": if_match} if if_match else None
        response = self._request("PATCH", _execution_path(execution_id), json=body, headers=headers)
        return StatusUpdate.from_json(response.json())

    def cancel(self, execution_id: str) -> StatusUpdate:
        return self.update_status(execution_id, "cancelled")

    def complete(self, execution_id: str) -> StatusUpdate:
        return self.update_status(execution_id, "completed")

    def fail(self, execution_id: str, error_info: dict[str, Any] | None = None) -> StatusUpdate:
        return self.update_status(execution_id, "failed", error_info)

    def heartbeat(self, execution_id: str) -> Heartbeat:
        """Say the execution is alive. Raises ConflictError (EXECUTION_NOT_RUNNING, with
        `current_status`) when it was stopped: the worker's cue to stop."""
        return Heartbeat.from_json(self._request("POST", f"{_execution_path(execution_id)}/heartbeat").json())

    def history(self, execution_id: str) -> list[StatusChange]:
        """The execution's status changes, oldest first."""
        body = self._request("GET", f"{_execution_path(execution_id)}/history").json()
        return [StatusChange.from_json(item, execution_id=body["execution_id"]) for item in body["results"]]

    # --- the change feed -------------------------------------------------------------

    def list_status_changes(
        self,
        after: str | None = None,
        *,
        execution_id: str | None = None,
        new_status: str | list[str] | None = None,
        channel: str | list[str] | None = None,
        page_size: int | None = None,
    ) -> StatusChangePage:
        """One page of the status changes the caller may see (of the executions it may see),
        oldest first, after the cursor `after` (from the oldest when None)."""
        params = {
            "after": after,
            "execution_id": execution_id,
            "new_status": _one_or_many(new_status),
            "channel": _one_or_many(channel),
            "page_size": page_size,
        }
        body = self._request("GET", "/status-changes", params=params).json()
        return StatusChangePage(
            results=[StatusChange.from_json(item) for item in body["results"]],
            next_cursor=body["next_cursor"],
            has_more=body["has_more"],
        )

    def iter_status_changes(
        self, after: str | None = None, *, poll_every: float | None = None, **filters: Any
    ) -> "StatusChangeStream":
        """Every status change after the cursor `after`, page after page, oldest first:
        until the feed has no more (`poll_every=None`), or for ever, asking again every
        `poll_every` seconds when it has none. `filters` are list_status_changes's. The
        returned iterator's `cursor` is where to resume from (see StatusChangeStream)."""
        return StatusChangeStream(self, after, poll_every, filters)

    # --- notification endpoints ------------------------------------------------------

    def create_notification_endpoint(
        self,
        kind: str,
        events: list[str],
        *,
        url: str | None = None,
        emails: list[str] | None = None,
        name_prefix: str | None = None,
        monitor: str | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> NotificationEndpoint:
        """A new endpoint owned by the caller: `kind` webhook or slack with a `url`, or email
        with `emails`; `events` among execution.completed, execution.failed,
        execution.cancelled, execution.interrupted, monitor.down, monitor.up. The result's
        `secret` is the only time the service shows it: keep it to verify webhooks.

        Unlike the other calls, a create is retried only when it certainly never reached the
        service (a refused connection, 429, 503): it has no idempotency key, and a retry after
        a lost answer could make a second endpoint."""
        body: dict[str, Any] = {"kind": kind, "events": events}
        optional = {
            "url": url,
            "emails": emails,
            "name_prefix": name_prefix,
            "monitor": monitor,
            "description": description,
            "enabled": enabled,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        response = self._request("POST", "/notification-endpoints", json=body, idempotent=False)
        return NotificationEndpoint.from_json(response.json())

    def list_notification_endpoints(
        self,
        *,
        kind: str | list[str] | None = None,
        enabled: bool | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> NotificationEndpointPage:
        """One page of the caller's endpoints (every endpoint, for managers), newest first."""
        params = {
            "kind": _one_or_many(kind),
            "enabled": None if enabled is None else str(enabled).lower(),
            "page_size": page_size,
            "cursor": cursor,
        }
        body = self._request("GET", "/notification-endpoints", params=params).json()
        return NotificationEndpointPage(
            results=[NotificationEndpoint.from_json(item) for item in body["results"]],
            next_cursor=body["next_cursor"],
        )

    def get_notification_endpoint(self, endpoint_id: str) -> NotificationEndpoint:
        return NotificationEndpoint.from_json(self._request("GET", _endpoint_path(endpoint_id)).json())

    def update_notification_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = UNCHANGED,
        emails: list[str] | None = UNCHANGED,
        events: list[str] = UNCHANGED,
        name_prefix: str | None = UNCHANGED,
        monitor: str | None = UNCHANGED,
        description: str = UNCHANGED,
        enabled: bool = UNCHANGED,
    ) -> NotificationEndpoint:
        """Change the fields given (name_prefix=None or monitor=None clears that filter);
        `enabled=True` also enables an endpoint the service disabled after failing."""
        given = {
            "url": url,
            "emails": emails,
            "events": events,
            "name_prefix": name_prefix,
            "monitor": monitor,
            "description": description,
            "enabled": enabled,
        }
        body = {key: value for key, value in given.items() if value is not UNCHANGED}
        response = self._request("PATCH", _endpoint_path(endpoint_id), json=body)
        return NotificationEndpoint.from_json(response.json())

    def delete_notification_endpoint(self, endpoint_id: str) -> None:
        """Delete the endpoint and its delivery log. A retry after a lost answer gets
        NotFoundError: the first try deleted it."""
        self._request("DELETE", _endpoint_path(endpoint_id))

    def rotate_notification_secret(self, endpoint_id: str) -> NotificationEndpoint:
        """A new signing secret (in the result's `secret`, shown this once); for 24 hours the
        service signs with the previous one too (`previous_secret_valid_until`). Retried only
        when it never reached the service: a second rotation would drop the first's secret."""
        response = self._request("POST", f"{_endpoint_path(endpoint_id)}/rotate-secret", idempotent=False)
        return NotificationEndpoint.from_json(response.json())

    def send_test_notification(self, endpoint_id: str) -> NotificationDelivery:
        """Queue a notification.test event for the endpoint; follow it with get_notification_delivery."""
        response = self._request("POST", f"{_endpoint_path(endpoint_id)}/test")
        return NotificationDelivery.from_json(response.json())

    def list_notification_deliveries(
        self,
        endpoint_id: str,
        *,
        state: str | list[str] | None = None,
        event_type: str | list[str] | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> NotificationDeliveryPage:
        """One page of the endpoint's deliveries (messages and their attempts), newest first."""
        params = {
            "state": _one_or_many(state),
            "event_type": _one_or_many(event_type),
            "page_size": page_size,
            "cursor": cursor,
        }
        body = self._request("GET", f"{_endpoint_path(endpoint_id)}/deliveries", params=params).json()
        return NotificationDeliveryPage(
            results=[NotificationDelivery.from_json(item) for item in body["results"]],
            next_cursor=body["next_cursor"],
        )

    def get_notification_delivery(self, endpoint_id: str, delivery_id: str) -> NotificationDelivery:
        """One delivery, by its id (the webhook-id its receiver saw)."""
        return NotificationDelivery.from_json(
            self._request("GET", _delivery_path(endpoint_id, delivery_id)).json()
        )

    def replay_notification_delivery(self, endpoint_id: str, delivery_id: str) -> NotificationDelivery:
        """Send a delivered or failed message again (same webhook-id, a new retry schedule)."""
        response = self._request("POST", f"{_delivery_path(endpoint_id, delivery_id)}/replay")
        return NotificationDelivery.from_json(response.json())

    def replay_failed_notifications(self, endpoint_id: str, since: datetime) -> int:
        """Send again every failed message of the endpoint created since `since`; how many."""
        body = {"since": since.isoformat()}
        return self._request("POST", f"{_endpoint_path(endpoint_id)}/replay", json=body).json()["replayed"]

    # --- the one place requests are made -----------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        if params is not None:
            params = {key: value for key, value in params.items() if value is not None}
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            status_code = None
            try:
                response = self._http.request(method, path, params=params, json=json, headers=headers)
            except RETRY_ERRORS as error:
                if not idempotent and not isinstance(error, UNSENT_ERRORS):
                    raise ServiceUnavailableError(
                        f"{method} {API_PREFIX}{path}: {type(error).__name__}: {error}; not retried, as it "
                        "may have been done: look before trying again",
                    ) from error
                failure: BaseException | None = error
                problem = f"{type(error).__name__}: {error}"
                wait = None
            else:
                if response.is_success:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise error_for(response)
                failure = None
                status_code = response.status_code
                problem = f"answered {response.status_code}"
                wait = _retry_after(response)
            if wait is None:
                backoff = FIRST_BACKOFF * 2 ** (tries - 1)
                wait = backoff + random.uniform(0, backoff / 2)
            wait = min(wait, MAX_RETRY_WAIT)
            elapsed = time.monotonic() - started
            if elapsed + wait > self.retry_for:
                raise ServiceUnavailableError(
                    f"{method} {API_PREFIX}{path}: {problem}; gave up after {tries} "
                    f"{'try' if tries == 1 else 'tries'} in {elapsed:.1f}s",
                    status_code,
                ) from failure
            logger.warning("%s %s%s: %s; retrying in %.1fs", method, API_PREFIX, path, problem, wait)
            time.sleep(wait)


class StatusChangeStream:
    """An iterator over the change feed. `cursor` is the `next_cursor` of the last page whose
    changes were all handed out: save it and pass it as `after` to resume. A consumer that
    stops in the middle of a page gets that page's changes again when it resumes from
    `cursor` (at least once, never lost); one that must see each change exactly once pages
    with list_status_changes and saves each page's next_cursor with what it did with the page."""

    def __init__(self, client: ExecutionsClient, after: str | None, poll_every: float | None, filters: dict):
        self.cursor = after
        self._client = client
        self._poll_every = poll_every
        self._filters = filters

    def __iter__(self) -> Iterator[StatusChange]:
        while True:
            page = self._client.list_status_changes(self.cursor, **self._filters)
            yield from page.results
            self.cursor = page.next_cursor
            if not page.has_more:
                if self._poll_every is None:
                    return
                time.sleep(self._poll_every)
