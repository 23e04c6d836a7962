"""The API's configuration: the platform's settings, the address to serve on, how
much a request may send and for how long, where metrics are served, and
(optionally) the webhook master key, without which webhooks cannot be created."""

from typing import Annotated

from pydantic import Field, SecretStr

from services.api.limits import RequestLimits
from services.delivery.settings import MIN_MASTER_KEY_LENGTH
from services.settings import Settings


class ApiSettings(Settings):
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    webhook_master_key: SecretStr | None = Field(default=None, min_length=MIN_MASTER_KEY_LENGTH)
    """The notifier's key (CORELINE_WEBHOOK_MASTER_KEY): webhook secrets derive from it."""
    api_secure_cookies: bool = False
    """Mark the dashboard's session cookie Secure and send HSTS (set behind HTTPS)."""
    api_max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    """The largest JSON body an API route accepts (CORELINE_API_MAX_BODY_BYTES)."""
    api_max_form_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    """The largest form a dashboard page accepts (CORELINE_API_MAX_FORM_BYTES)."""
    api_body_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """How long a client may take to send a whole body (CORELINE_API_BODY_TIMEOUT_S)."""
    api_limit_concurrency: Annotated[int, Field(ge=8, le=100_000)] = 1000
    """Connections and requests in flight before the server answers 503."""
    api_keep_alive_s: Annotated[int, Field(ge=1, le=300)] = 5
    """How long an idle keep-alive connection stays open."""
    api_metrics_host: str = "127.0.0.1"
    """Where the API's own /metrics listener binds (set 0.0.0.0 in a container)."""
    api_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """The API's /metrics listener, apart from the public port; 0: no listener."""

    def master_key(self) -> bytes | None:
        key = self.webhook_master_key
        return None if key is None else key.get_secret_value().encode()

    def request_limits(self) -> RequestLimits:
        return RequestLimits(
            max_json_bytes=self.api_max_body_bytes,
            max_form_bytes=self.api_max_form_bytes,
            body_timeout_s=self.api_body_timeout_s,
        )
