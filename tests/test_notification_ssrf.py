"""The SSRF guard: notifications go only to public addresses, judged on the address the
connection actually goes to, unless NOTIFICATIONS_ALLOW_PRIVATE_TARGETS is on (the suite
turns it on for its receivers on 127.0.0.1: tests/settings.py; these tests turn it off)."""

import httpcore
import httpx
import pytest

from executions.models import MessageState, NotificationEndpoint, NotificationMessage
from executions.notifications.delivery import NotificationDelivery
from executions.notifications.services import InvalidEndpoint, notification_endpoint_create
from executions.notifications.ssrf import (
    PublicOnlyBackend,
    PublicOnlyTransport,
    TargetRefused,
    address_is_public,
    check_target_url,
)
from executions.notifications.transports import new_http_client
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


def test_the_transport_connects_through_the_guarded_backend():
    """httpx takes no network backend: PublicOnlyTransport replaces the pool httpx built
    (the private attributes it relies on are named here, so an httpx upgrade that renames
    them fails this test rather than turning the guard off)."""
    client = new_http_client(4)
    transport = client._transport
    assert isinstance(transport, PublicOnlyTransport)
    assert isinstance(transport._pool, httpcore.ConnectionPool)
    assert isinstance(transport._pool._network_backend, PublicOnlyBackend)
    assert transport._pool._max_connections == 4
    assert client.follow_redirects is False and client.trust_env is False
    client.close()


def test_a_name_that_resolves_to_loopback_is_refused_on_connecting(private_targets_refused, tmp_path):
    """localhost passes no DNS trick: the guard sees 127.0.0.1 (and ::1) when it resolves the
    name for the connection, and never connects; the receiver gets nothing."""
    with receiver_process(tmp_path) as receiver:
        receiver.route("/hook", "whsec_" + "A" * 43)
        with new_http_client(2) as client:
            with pytest.raises(TargetRefused, match="localhost resolves to a non-public address"):
                client.post(f"http://localhost:{receiver.port}/hook", content=b"{}")
            with pytest.raises(TargetRefused, match="127.0.0.1"):
                client.post(f"http://127.0.0.1:{receiver.port}/hook", content=b"{}")
        assert receiver.requests() == []


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
        with new_http_client(2) as client:
            assert client.post(f"http://localhost:{receiver.port}/hook", content=b"{}").status_code == 200
        assert len(receiver.requests("/hook")) == 1


def test_a_redirect_is_never_followed(tmp_path):
    with receiver_process(tmp_path) as receiver:
        receiver.route("/hook", "whsec_" + "A" * 43, statuses=[302])
        with new_http_client(2) as client:
            response = client.post(receiver.url("/hook"), content=b"{}")
        assert response.status_code == 302
        assert [entry["path"] for entry in receiver.requests()] == ["/hook"]
        assert isinstance(response, httpx.Response)
