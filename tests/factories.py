import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from executions.models import (
    ApiToken,
    DeliveryAttempt,
    Execution,
    ExecutionStatus,
    NotificationEndpoint,
    NotificationMessage,
)
from executions.tokens import token_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def permissions(user, create, codenames):
        for codename in codenames or ():
            user.user_permissions.add(Permission.objects.get(codename=codename))


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Execution

    name = factory.Sequence(lambda n: f"job-{n}")
    status = ExecutionStatus.RUNNING
    created_by = factory.SubFactory(UserFactory)


def api_key_for(user, *, used_just_now: bool = True, **token_fields) -> str:
    """The key of a new API token of `user` (other fields: name, expires_at, revoked_at...).

    Marked as used just now by default: a token records its last use at most once a minute,
    with one extra statement, and tests that count or compare a request's SQL statements
    mean the request's own. Tests of that recording pass used_just_now=False."""
    token, key = token_create(user=user, name=token_fields.pop("name", "tests"))
    if used_just_now:
        token_fields["last_used_at"] = timezone.now()
    if token_fields:
        ApiToken.objects.filter(pk=token.pk).update(**token_fields)
    return key


class NotificationEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationEndpoint

    owner = factory.SubFactory(UserFactory)
    kind = "webhook"
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")
    events = factory.LazyFunction(lambda: ["execution.failed", "execution.completed"])


class NotificationMessageFactory(factory.django.DjangoModelFactory):
    """A message; `attempts_made=n` gives it n failed attempts (HTTP 500) in its log."""

    class Meta:
        model = NotificationMessage
        skip_postgeneration_save = True

    endpoint = factory.SubFactory(NotificationEndpointFactory)
    event_type = "execution.failed"
    subject_id = factory.Sequence(lambda n: f"0190c0de-0000-7000-8000-{n:012d}")
    occurred_at = factory.LazyFunction(timezone.now)
    payload = factory.LazyAttribute(lambda message: {"id": message.subject_id, "name": "nightly"})

    @factory.post_generation
    def attempts_made(message, create, count):
        for _ in range(count or 0):
            DeliveryAttempt.objects.create(
                message=message, status_code=500, latency_ms=12, error="HTTP 500", response_body="oops"
            )
        if count:
            NotificationMessage.objects.filter(pk=message.pk).update(attempts=count)
            message.attempts = count


def monitor_for(owner, name="nightly", schedule="every 1h", grace_seconds=60, **fields):
    """A monitor of `owner` made through the service, as the API makes one."""
    from executions.monitors.services import monitor_create

    return monitor_create(owner=owner, name=name, schedule=schedule, grace_seconds=grace_seconds, **fields)
