"""The notifier's configuration: the platform's settings, the webhook master key
(``CORELINE_WEBHOOK_MASTER_KEY``), from which every webhook secret is derived, the
webhook rules (``CORELINE_EGRESS_ALLOW``, ``CORELINE_WEBHOOK_LIMIT_PER_CLINIC``) and
the SMTP relay for alert e-mail (``CORELINE_SMTP_*``)."""

from typing import Annotated, Final

from pydantic import Field, SecretStr, ValidationError

from services.delivery.email_sender import SmtpSettings
from services.delivery.webhooks import DEFAULT_LIMIT_PER_CLINIC, WebhookRules
from services.egress import EgressGate, EgressSettings, Resolve, system_resolve
from services.settings import ConfigurationError, Settings

MIN_MASTER_KEY_LENGTH: Final = 32


class WebhookSettings(EgressSettings):
    webhook_limit_per_clinic: Annotated[int, Field(ge=1, le=1000)] = DEFAULT_LIMIT_PER_CLINIC
    """How many webhooks one clinic may have (deleted ones do not count)."""

    def webhook_rules(self, resolve: Resolve = system_resolve) -> WebhookRules:
        return WebhookRules(EgressGate(self.allow_list(), resolve), self.webhook_limit_per_clinic)


class DeliverySettings(Settings, WebhookSettings, SmtpSettings):
    webhook_master_key: SecretStr = Field(min_length=MIN_MASTER_KEY_LENGTH)
    """At least 32 characters of randomness, e.g. ``openssl rand -hex 32``.  Changing
    it changes every webhook's secret at once."""

    def master_key(self) -> bytes:
        return self.webhook_master_key.get_secret_value().encode()


def load_webhook_settings() -> WebhookSettings:
    """The webhook rules from the environment; a bad value raises a
    ``ConfigurationError`` naming the variable and what is wrong with it."""
    try:
        return WebhookSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"CORELINE_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(problems) from None
