"""Email and Slack for real: a change made through the API reaches a real SMTP server (aiosmtpd,
on a free port of 127.0.0.1, through Django's SMTP backend) and a local Slack receiver process
(tests/slack_receiver.py, which checks the JSON shape Slack documents), by the worker's own
notification tasks; the deliveries then show what happened."""

import contextlib
import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devtools.net import free_port
from executions.models import NotificationMessage
from executions.notifications.delivery import NotificationDelivery

from ..factories import ExecutionFactory
from ..notifications import run_tasks_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PUBLIC_URL = "https://executions.example.com"
SENDER = "Executions <alerts@example.com>"
SLACK_RECEIVER = Path(__file__).parent.parent / "slack_receiver.py"
ENDPOINTS = "/api/v1/notification-endpoints"


class Mailbox:
    """aiosmtpd's handler: keeps every message the server accepts, or refuses them all."""

    def __init__(self, refuse_with: str | None = None):
        self.refuse_with = refuse_with
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class Login:
    """aiosmtpd's authenticator: one user name and password."""

    def __init__(self, user: str, password: str):
        self.expected = (user.encode(), password.encode())

    def __call__(self, server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers the refusal itself (535).
        return AuthResult(success=(auth_data.login, auth_data.password) == self.expected, handled=False)


@contextlib.contextmanager
def smtp_server(handler, **options):
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def mail_settings(settings):
    # pytest-django puts Django's in-memory outbox in place for every test; these go over SMTP.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EXECUTIONS_PUBLIC_URL = PUBLIC_URL
    settings.DEFAULT_FROM_EMAIL = SENDER
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    return settings


def fail_through_the_api(client, owner, name="nightly-report"):
    execution = ExecutionFactory(created_by=owner, name=name)
    response = client.patch(
        f"/api/v1/executions/{execution.pk}",
        {"status": "failed", "error_info": {"reason": "exit code 2", "stderr_tail": "disk full"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    return execution


def the_one_delivery(client, endpoint_id) -> dict:
    [delivery] = client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries").json()["results"]
    return delivery


def deliver_until(condition):
    run_tasks_until(condition, delivery=NotificationDelivery(), timeout=20)


def attempted(state=None):
    """A condition: some message has an attempt recorded (and is in `state`)."""
    messages = NotificationMessage.objects.filter(delivery_attempts__isnull=False)
    return lambda: (messages.filter(state=state) if state else messages).exists()


# --- Email --------------------------------------------------------------------------------


def test_a_failed_execution_is_an_email_a_person_can_read(owner_client, owner, mail_settings):
    mailbox = Mailbox()
    with smtp_server(mailbox) as server:
        mail_settings.EMAIL_PORT = server.port
        created = owner_client.post(
            ENDPOINTS,
            {
                "kind": "email",
                "emails": ["ops@example.com", "lead@example.org"],
                "events": ["execution.failed"],
            },
            format="json",
        )
        assert created.status_code == 201, created.content
        execution = fail_through_the_api(owner_client, owner)

        deliver_until(attempted("delivered"))

    [envelope] = mailbox.envelopes
    assert envelope.mail_from == "alerts@example.com"
    assert sorted(envelope.rcpt_tos) == ["lead@example.org", "ops@example.com"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["From"] == SENDER
    assert (
        mail["Subject"]
        == '[executions] Execution "nightly-report" failed (was running, by owner through api)'
    )
    assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    text = mail.get_content().replace("\r\n", "\n")
    assert text.startswith('Execution "nightly-report" failed (was running, by owner through api).\n')
    assert '"reason": "exit code 2"' in text and '"stderr_tail": "disk full"' in text
    assert f"Execution: {PUBLIC_URL}/api/v1/executions/{execution.pk}\n" in text
    assert f"Admin: {PUBLIC_URL}/admin/executions/execution/{execution.pk}/change/\n" in text
    delivery = the_one_delivery(owner_client, created.json()["id"])
    assert (delivery["state"], delivery["event_type"]) == ("delivered", "execution.failed")
    assert delivery["delivery_attempts"][0]["succeeded"] is True


# aiosmtpd warns that AUTH without TLS is unsafe: true, and beside the point on 127.0.0.1.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_the_smtp_login_comes_from_the_settings_and_a_wrong_one_is_a_failed_attempt(
    owner_client, owner, mail_settings
):
    mailbox = Mailbox()
    login = {"authenticator": Login("alerts", "s3cret"), "auth_required": True, "auth_require_tls": False}
    with smtp_server(mailbox, **login) as server:
        mail_settings.EMAIL_PORT = server.port
        mail_settings.EMAIL_HOST_USER = "alerts"
        mail_settings.EMAIL_HOST_PASSWORD = "wrong"
        endpoint_id = owner_client.post(
            ENDPOINTS,
            {"kind": "email", "emails": ["ops@example.com"], "events": ["execution.failed"]},
            format="json",
        ).json()["id"]
        fail_through_the_api(owner_client, owner)

        deliver_until(attempted())
        refused = the_one_delivery(owner_client, endpoint_id)
        assert refused["state"] == "pending" and mailbox.envelopes == []
        [attempt] = refused["delivery_attempts"]
        assert attempt["succeeded"] is False and "535" in attempt["error"]

        # The right password, and the message sent again (a replay, rather than waiting 5 s).
        mail_settings.EMAIL_HOST_PASSWORD = "s3cret"
        message = NotificationMessage.objects.get()
        NotificationMessage.objects.filter(pk=message.pk).update(state="failed")
        owner_client.post(f"{ENDPOINTS}/{endpoint_id}/deliveries/{message.webhook_id}/replay")
        deliver_until(attempted("delivered"))

    assert len(mailbox.envelopes) == 1


def test_a_refusing_mail_server_is_a_failed_attempt_retried_later(owner_client, owner, mail_settings):
    with smtp_server(Mailbox(refuse_with="550 5.1.1 Mailbox unavailable")) as server:
        mail_settings.EMAIL_PORT = server.port
        endpoint_id = owner_client.post(
            ENDPOINTS,
            {"kind": "email", "emails": ["gone@example.com"], "events": ["execution.failed"]},
            format="json",
        ).json()["id"]
        fail_through_the_api(owner_client, owner)
        deliver_until(attempted())

    delivery = the_one_delivery(owner_client, endpoint_id)
    assert delivery["state"] == "pending" and delivery["next_attempt_at"] is not None
    assert "550" in delivery["delivery_attempts"][0]["error"]


# --- Slack --------------------------------------------------------------------------------


class SlackReceiver:
    def __init__(self, folder: Path):
        self.log_path = folder / "slack.jsonl"
        self.log_path.touch()
        self.process = subprocess.Popen(
            [sys.executable, str(SLACK_RECEIVER), str(self.log_path)], stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}/services/T000/B000/XXXX"

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def close(self):
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def slack(tmp_path):
    receiver = SlackReceiver(tmp_path)
    yield receiver
    receiver.close()


def test_a_failed_execution_is_a_slack_message_in_the_shape_slack_documents(
    owner_client, owner, slack, settings
):
    settings.EXECUTIONS_PUBLIC_URL = PUBLIC_URL
    endpoint_id = owner_client.post(
        ENDPOINTS, {"kind": "slack", "url": slack.url, "events": ["execution.failed"]}, format="json"
    ).json()["id"]
    # Slack's markup characters in a name: escaped, or Slack would read a mention or a link.
    execution = fail_through_the_api(owner_client, owner, name="<!channel> deploy & <rollback>")

    deliver_until(attempted("delivered"))

    [request] = slack.requests()
    assert request["valid"], request["problems"]
    body = request["body"]
    assert body["text"].startswith('Execution "&lt;!channel&gt; deploy &amp; &lt;rollback&gt;" failed')
    assert f"<{PUBLIC_URL}/api/v1/executions/{execution.pk}|execution>" in body["text"]
    assert f"<{PUBLIC_URL}/admin/executions/execution/{execution.pk}/change/|admin>" in body["text"]
    assert "exit code 2" in body["text"]
    delivery = the_one_delivery(owner_client, endpoint_id)
    assert delivery["state"] == "delivered"
    assert delivery["delivery_attempts"][0]["status_code"] == 200
    assert delivery["delivery_attempts"][0]["response_body"] == "ok"


def test_the_test_event_reaches_slack(owner_client, slack):
    endpoint_id = owner_client.post(
        ENDPOINTS, {"kind": "slack", "url": slack.url, "events": ["monitor.down"]}, format="json"
    ).json()["id"]

    assert owner_client.post(f"{ENDPOINTS}/{endpoint_id}/test").status_code == 202
    deliver_until(attempted("delivered"))

    [request] = slack.requests()
    assert request["valid"], request["problems"]
    assert request["body"]["text"].startswith("Test notification")
    assert the_one_delivery(owner_client, endpoint_id)["state"] == "delivered"


def test_the_receiver_refuses_what_slack_would_refuse(slack):
    # The receiver's own check, so that a pass above means something.
    def post(body, **headers):
        return httpx.post(
            slack.url, content=json.dumps(body), headers={"Content-Type": "application/json", **headers}
        )

    assert post({"text": "fine <https://example.com|link> &amp; more"}).text == "ok"
    assert post({"text": ""}).text == "no_text"
    assert post({"text": "a <b>bold</b> & wrong"}).status_code == 400
    assert (
        post(
            {"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]}
        ).status_code
        == 400
    )
    assert post({"text": "x"}, **{"Content-Type": "text/plain"}).status_code == 400
    assert [entry["valid"] for entry in slack.requests()] == [True, False, False, False, False]
