"""Failures of alert delivery that callers may handle."""


class DeliveryError(Exception):
    """Base of every delivery failure."""


class WebhookNotFoundError(DeliveryError):
    """No webhook has the given id."""


class InvalidWebhookError(DeliveryError):
    """A webhook cannot be registered as given; the message says what would work."""


class WebhookLimitError(DeliveryError):
    """The clinic has as many webhooks as it may; the message says how many."""
