"""The notifier's configuration: the platform's settings plus the webhook master key
(``CORELINE_WEBHOOK_MASTER_KEY``), from which every webhook secret is derived."""

from typing import Final

from pydantic import Field, SecretStr

from services.settings import Settings

MIN_MASTER_KEY_LENGTH: Final = 32


class DeliverySettings(Settings):
    webhook_master_key: SecretStr = Field(min_length=MIN_MASTER_KEY_LENGTH)
    """At least 32 characters of randomness, e.g. ``openssl rand -hex 32``.  Changing
    it changes every webhook's secret at once."""

    def master_key(self) -> bytes:
        return self.webhook_master_key.get_secret_value().encode()
