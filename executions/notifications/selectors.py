"""Reads of notification endpoints and their delivery log, scoped to what the caller may see.

The rule is the executions' (selectors.visibility_of): a user sees the endpoints they own;
superusers and holders of manage_all_executions see every endpoint. An endpoint the caller
may not see is answered exactly like one that does not exist.
"""

import uuid

from django.db.models import Prefetch, QuerySet

from ..errors import DeliveryNotFound, NotificationEndpointNotFound
from ..models import DeliveryAttempt, NotificationEndpoint, NotificationMessage
from ..selectors import sees_all_executions

WEBHOOK_ID_MAX_LENGTH = NotificationMessage._meta.get_field("webhook_id").max_length


def notification_endpoints_visible_to(user) -> QuerySet:
    """The endpoints `user` may see and change: their own, or all for managers."""
    endpoints = NotificationEndpoint.objects.all()
    sees_all = sees_all_executions(user)
    if sees_all is None:
        return endpoints.none()
    return endpoints if sees_all else endpoints.filter(owner=user.pk)


def notification_endpoint_get(endpoints: QuerySet, endpoint_id) -> NotificationEndpoint:
    """One endpoint of `endpoints`, with its owner. An id that is not a UUID, a missing
    endpoint and an invisible one all raise NotificationEndpointNotFound."""
    try:
        endpoint_id = uuid.UUID(str(endpoint_id))
    except ValueError:
        raise NotificationEndpointNotFound() from None
    endpoint = endpoints.select_related("owner").filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotificationEndpointNotFound()
    return endpoint


def notification_messages_of(endpoint: NotificationEndpoint) -> QuerySet:
    """The endpoint's messages (its deliveries), each with its attempts newest first."""
    attempts = DeliveryAttempt.objects.order_by("-attempted_at", "-id")
    return NotificationMessage.objects.filter(endpoint=endpoint).prefetch_related(
        Prefetch("delivery_attempts", queryset=attempts)
    )


def notification_message_get(endpoint: NotificationEndpoint, webhook_id: str) -> NotificationMessage:
    """The endpoint's message whose webhook-id is `webhook_id`; DeliveryNotFound if it has none
    (also for text that cannot be a webhook-id, which never reaches the database)."""
    if not (len(webhook_id) <= WEBHOOK_ID_MAX_LENGTH and webhook_id.isascii() and webhook_id.isprintable()):
        raise DeliveryNotFound()
    message = notification_messages_of(endpoint).filter(webhook_id=webhook_id).first()
    if message is None:
        raise DeliveryNotFound()
    return message
