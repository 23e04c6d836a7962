"""Alert delivery (DESIGN §8): every alert state change goes to the clinic's MQTT
alert topic and to the clinic's webhooks (HMAC-SHA256 signed, retried with backoff,
logged).

Build a ``Notifier`` and call ``run(stop)`` / ``step()`` (the process that runs it is
``services.projector.run_notifier``).  Manage webhooks with
``create_webhook``, ``rotate_secret``, ``set_webhook_active`` and ``list_webhooks``;
receivers check requests with ``verify_signature``.
"""

from services.delivery.delivery_log import DeliveryRecord, delivery_log
from services.delivery.errors import DeliveryError, InvalidWebhookError, WebhookNotFoundError
from services.delivery.notice import AlertNotice, AlertState, build_notice, is_alert_stream
from services.delivery.notifier import NOTIFIER, Notifier, NotifierOptions
from services.delivery.retry import PostResult, RetryPolicy, after_attempt, retry_delay
from services.delivery.settings import DeliverySettings
from services.delivery.signature import derive_secret, sign, signed_headers, verify_signature
from services.delivery.tables import DeliveryState
from services.delivery.webhooks import (
    Webhook,
    create_webhook,
    list_webhooks,
    rotate_secret,
    set_webhook_active,
)
from services.delivery.worker import DeliveryWorker

__all__ = [
    "NOTIFIER",
    "AlertNotice",
    "AlertState",
    "DeliveryError",
    "DeliveryRecord",
    "DeliverySettings",
    "DeliveryState",
    "DeliveryWorker",
    "InvalidWebhookError",
    "Notifier",
    "NotifierOptions",
    "PostResult",
    "RetryPolicy",
    "Webhook",
    "WebhookNotFoundError",
    "after_attempt",
    "build_notice",
    "create_webhook",
    "delivery_log",
    "derive_secret",
    "is_alert_stream",
    "list_webhooks",
    "retry_delay",
    "rotate_secret",
    "set_webhook_active",
    "sign",
    "signed_headers",
    "verify_signature",
]
