"""Deleting a notification endpoint: the API's DELETE and the admin's. (The core's services
module has no delete; this is the one place it happens.)"""

from ..models import NotificationEndpoint, NotificationMessage
from ..statements import write_transaction

# Messages deleted per statement: Django's cascade loads the messages it deletes (to find
# their delivery attempts), so a long log goes in slices of bounded memory.
DELETE_BATCH_SIZE = 1000


def notification_endpoint_delete(endpoint: NotificationEndpoint) -> None:
    """Delete `endpoint`, its messages (pending ones are never sent) and their delivery log,
    in one transaction."""
    messages = NotificationMessage.objects.filter(endpoint=endpoint).only("pk")
    with write_transaction():
        while True:
            batch = list(messages.values_list("pk", flat=True)[:DELETE_BATCH_SIZE])
            if not batch:
                break
            NotificationMessage.objects.filter(pk__in=batch).only("pk").delete()
        NotificationEndpoint.objects.filter(pk=endpoint.pk).delete()
