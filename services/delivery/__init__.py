"""Alert delivery (DESIGN §8): every alert state change goes to the clinic's MQTT
alert topic (and, retained, to the alert's own topic while it is open), to the
clinic's webhooks (HMAC-SHA256 signed, retried with backoff, logged) and by e-mail to
the people who chose it (``set_email_severities``; sent by ``EmailWorker`` through
the ``CORELINE_SMTP_*`` relay, logged and retried like webhooks).

Build a ``Notifier`` and call ``run(stop)`` / ``step()`` (the process that runs it is
``services.projector.run_notifier``).  Manage webhooks with
``create_webhook`` (under ``WebhookRules``: egress policy and a limit per clinic),
``rotate_secret``, ``set_webhook_active``, ``delete_webhook`` and ``list_webhooks``;
receivers check requests with ``verify_signature``.
"""

from services.delivery.delivery_log import DeliveryRecord, delivery_log
from services.delivery.email_log import EmailRecord, email_log, set_email_severities
from services.delivery.email_sender import EmailWorker, SmtpConfig, SmtpSettings
from services.delivery.errors import (
    DeliveryError,
    InvalidWebhookError,
    WebhookLimitError,
    WebhookNotFoundError,
)
from services.delivery.http_post import PostNotice, notice_poster
from services.delivery.notice import AlertNotice, AlertState, build_notice, is_alert_stream
from services.delivery.notifier import NOTIFIER, Notifier, NotifierOptions
from services.delivery.retry import (
    REFUSED_BY_POLICY,
    PostResult,
    RetryPolicy,
    after_attempt,
    retry_delay,
)
from services.delivery.settings import DeliverySettings, WebhookSettings, load_webhook_settings
from services.delivery.signature import derive_secret, sign, signed_headers, verify_signature
from services.delivery.tables import DeliveryState
from services.delivery.webhooks import (
    PUBLIC_ONLY,
    Webhook,
    WebhookRules,
    create_webhook,
    delete_webhook,
    list_webhooks,
    rotate_secret,
    set_webhook_active,
)
from services.delivery.worker import DeliveryWorker

__all__ = [
    "NOTIFIER",
    "PUBLIC_ONLY",
    "REFUSED_BY_POLICY",
    "AlertNotice",
    "AlertState",
    "DeliveryError",
    "DeliveryRecord",
    "DeliverySettings",
    "DeliveryState",
    "DeliveryWorker",
    "EmailRecord",
    "EmailWorker",
    "InvalidWebhookError",
    "Notifier",
    "NotifierOptions",
    "PostNotice",
    "PostResult",
    "RetryPolicy",
    "SmtpConfig",
    "SmtpSettings",
    "Webhook",
    "WebhookLimitError",
    "WebhookNotFoundError",
    "WebhookRules",
    "WebhookSettings",
    "after_attempt",
    "build_notice",
    "create_webhook",
    "delete_webhook",
    "delivery_log",
    "derive_secret",
    "email_log",
    "is_alert_stream",
    "list_webhooks",
    "load_webhook_settings",
    "notice_poster",
    "retry_delay",
    "rotate_secret",
    "set_email_severities",
    "set_webhook_active",
    "sign",
    "signed_headers",
    "verify_signature",
]
