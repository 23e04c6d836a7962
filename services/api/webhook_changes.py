"""A clinic's webhook changes, each recorded as a platform event in the clinic's
configuration stream (``config:clinic:{id}``) naming its author.  Never a secret:
the events have no field for one.

Switching off or on, rotating and deleting are recorded first, then applied: each
apply is idempotent or harmless to repeat, so a failure after the record heals on
a retry, and no change is ever applied unrecorded.  A webhook's id exists only
once its row is written (the row also enforces the clinic's limit), so creation
writes the row, then records it; if the record cannot be written, the webhook is
deleted again before its secret has reached anyone, and the request fails.
"""

from sqlalchemy import Engine

from schemas.streams import clinic_config_stream
from services.api.commands import record_change
from services.api.problems import unavailable
from services.delivery import delete_webhook
from services.eventstore import EventStore, EventStoreError


def recorded_creation(
    store: EventStore, engine: Engine, clinic_id: str, webhook_id: str, url: str, author: str
) -> None:
    data = {"clinic_id": clinic_id, "webhook_id": webhook_id, "url": url}
    try:
        record_change(store, clinic_config_stream(clinic_id), "webhook.created", data, author)
    except EventStoreError as error:
        delete_webhook(engine, webhook_id, clinic_id)
        raise unavailable(f"the webhook could not be recorded ({error}); try again") from error


def record_webhook_change(
    store: EventStore, clinic_id: str, webhook_id: str, kind: str, author: str
) -> None:
    """``kind``: ``webhook.disabled``, ``webhook.enabled``, ``webhook.secret_rotated``
    or ``webhook.deleted``."""
    data = {"clinic_id": clinic_id, "webhook_id": webhook_id}
    record_change(store, clinic_config_stream(clinic_id), kind, data, author)
