"""The API's configuration: the platform's settings, the address to serve on, and
(optionally) the webhook master key, without which webhooks cannot be created."""

from typing import Annotated

from pydantic import Field, SecretStr

from services.delivery.settings import MIN_MASTER_KEY_LENGTH
from services.settings import Settings


class ApiSettings(Settings):
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    webhook_master_key: SecretStr | None = Field(default=None, min_length=MIN_MASTER_KEY_LENGTH)
    """The notifier's key (CORELINE_WEBHOOK_MASTER_KEY): webhook secrets derive from it."""
    api_secure_cookies: bool = False
    """Mark the dashboard's session cookie Secure (set behind HTTPS)."""

    def master_key(self) -> bytes | None:
        key = self.webhook_master_key
        return None if key is None else key.get_secret_value().encode()
