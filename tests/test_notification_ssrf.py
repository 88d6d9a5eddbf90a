"""The SSRF guard: notifications go only to public addresses, judged on the address the
connection actually goes to, unless NOTIFICATIONS_ALLOW_PRIVATE_TARGETS is on (the suite
turns it on for its receivers on 127.0.0.1: tests/settings.py; these tests turn it off)."""

import pytest

from executions.models import MessageState, NotificationEndpoint, NotificationMessage
from executions.notifications.delivery import NotificationDelivery
from executions.notifications.services import InvalidEndpoint, notification_endpoint_create
from executions.notifications.ssrf import (
    PublicOnlyHTTPConnectionPool,
    PublicOnlyHTTPSConnection,
    PublicOnlyHTTPSConnectionPool,
    TargetRefused,
    address_is_public,
    check_target_url,
)
from executions.notifications.transports import http_post, new_http_client
from tests.factories import UserFactory
from tests.notifications import receiver_process, run_tasks_until


@pytest.fixture
def private_targets_refused(settings):
    settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = False


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service (link-local)
        "100.100.100.200",  # another cloud's metadata, in the shared 100.64.0.0/10
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",  # a metadata service's IPv6 (unique-local)
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not address_is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert address_is_public(address)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1 is not a public address"),
        ("http://[::1]/hook", "::1 is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://10.0.0.5/", "10.0.0.5 is not a public address"),
        ("http://localhost:8000/", "localhost is not a public address"),
        ("http://api.localhost/", "api.localhost is not a public address"),
        ("ftp://example.com/", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("http:///path-only", "has no host"),
        ("https://user:secret@example.com/", "must not carry a user name or password"),
        ("https://example.com:0/", "port must not be 0"),
        ("https://example.com:99999/", "not a valid URL"),
    ],
)
def test_a_target_is_checked_when_an_endpoint_is_made(private_targets_refused, url, reason):
    with pytest.raises(TargetRefused, match=reason):
        check_target_url(url)


def test_a_name_is_left_to_the_check_on_connecting(private_targets_refused):
    assert check_target_url("https://hooks.example.com/in") == "https://hooks.example.com/in"


def test_the_services_refusal_names_the_url_field(private_targets_refused, db):
    with pytest.raises(InvalidEndpoint, match="127.0.0.1 is not a public address") as refused:
        notification_endpoint_create(
            owner=UserFactory(), kind="webhook", url="http://127.0.0.1/hook", events=["execution.failed"]
        )
    assert refused.value.field == "url"


def test_with_private_targets_allowed_a_local_url_is_accepted():
    assert check_target_url("http://127.0.0.1:8000/hook") == "http://127.0.0.1:8000/hook"


def test_the_client_connects_through_the_guarded_connections():
    """The pool classes urllib3 builds its connections from are the guarded ones (named
    here, so that a urllib3 upgrade that stops using them fails this test rather than
    turning the guard off)."""
    client = new_http_client(4)
    assert client.pool_classes_by_scheme == {
        "http": PublicOnlyHTTPConnectionPool,
        "https": PublicOnlyHTTPSConnectionPool,
    }
    assert isinstance(client.connection_from_url("http://example.com/"), PublicOnlyHTTPConnectionPool)
    pool = client.connection_from_url("https://example.com/")
    assert (
        pool.ConnectionCls is PublicOnlyHTTPSConnection
        and pool._new_conn().__class__ is PublicOnlyHTTPSConnection
    )
    assert client.connection_pool_kw["retries"].total is False  # no retry of its own: the schedule decides
    assert client.connection_pool_kw["maxsize"] == 4
    client.clear()


def post(client, url):
    return http_post(client, url, b"{}", {})


def test_a_name_that_resolves_to_loopback_is_refused_on_connecting(private_targets_refused, tmp_path):
    """localhost passes no DNS trick: the guard sees 127.0.0.1 (and ::1) when it resolves the
    name for the connection, and never connects; the receiver gets nothing."""
    with receiver_process(tmp_path) as receiver:
        receiver.route("/hook", "whsec_" + "A" * 43)
        client = new_http_client(2)
        answer = post(client, f"http://localhost:{receiver.port}/hook")
        assert not answer.succeeded and answer.status_code is None
        assert answer.error.startswith("refused: localhost resolves to a non-public address (")
        assert "127.0.0.1" in post(client, f"http://127.0.0.1:{receiver.port}/hook").error
        with pytest.raises(TargetRefused):
            client.request("GET", f"http://localhost:{receiver.port}/hook")
        assert receiver.requests() == [] and receiver.arrivals() == []


@pytest.mark.django_db(transaction=True)
def test_a_message_to_an_endpoint_whose_name_now_resolves_to_loopback_is_refused_and_logged(
    private_targets_refused, tmp_path
):
    """An endpoint made when its name was public (here: made directly, as if DNS changed
    since): every attempt is refused before connecting, and the delivery log says why."""
    with receiver_process(tmp_path) as receiver:
        endpoint = NotificationEndpoint.objects.create(
            owner=UserFactory(), kind="webhook", url=f"http://localhost:{receiver.port}/hook", events=[]
        )
        receiver.route("/hook", endpoint.secret)
        message = NotificationMessage.objects.create(
            endpoint=endpoint,
            event_type="notification.test",
            subject_id="s",
            occurred_at="2026-12-05T10:00Z",
            payload={},
        )
        run_tasks_until(lambda: message.delivery_attempts.exists(), delivery=NotificationDelivery())
        attempt = message.delivery_attempts.get()
        assert not attempt.succeeded and attempt.status_code is None
        assert attempt.error.startswith("refused: localhost resolves to a non-public address (")
        message.refresh_from_db()
        assert message.state == MessageState.PENDING and message.attempts == 1  # retried on schedule
        assert receiver.requests() == []


def test_the_allow_setting_lets_a_local_receiver_be_reached(tmp_path):
    with receiver_process(tmp_path) as receiver:
        receiver.route("/hook", "whsec_" + "A" * 43)
        answer = post(new_http_client(2), f"http://localhost:{receiver.port}/hook")
        assert (answer.succeeded, answer.status_code, answer.body) == (True, 200, "ok")
        assert len(receiver.requests("/hook")) == 1


def test_a_redirect_is_never_followed(tmp_path):
    with receiver_process(tmp_path) as receiver:
        receiver.route("/hook", "whsec_" + "A" * 43, statuses=[302])
        answer = post(new_http_client(2), receiver.url("/hook"))
        assert (answer.succeeded, answer.status_code, answer.error) == (False, 302, "HTTP 302")
        assert [entry["path"] for entry in receiver.requests()] == ["/hook"]


def test_an_unknown_name_is_a_failed_attempt_not_an_error():
    answer = post(new_http_client(2), "http://no-such-host.invalid/hook")
    assert not answer.succeeded and answer.status_code is None
    assert "NameResolutionError" in answer.error
