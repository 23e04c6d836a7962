"""The agent's configuration from ``CORELINE_*`` variables (DESIGN §10).

Kept apart from the platform's settings so a handpiece never loads the database
stack: the agent's resident memory is a product requirement.
"""

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, FilePath, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.mqtt_url import BrokerAddress, MqttUrlError

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


def _supported_broker(url: str) -> str:
    try:
        BrokerAddress.parse(url)
    except MqttUrlError as error:
        raise ValueError(str(error)) from error
    return url


class MqttSettings(BaseSettings):
    """How any Coreline process reaches the broker."""

    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    mqtt_url: Annotated[str, AfterValidator(_supported_broker)] = DEFAULT_MQTT_URL
    mqtt_ca_file: FilePath | None = None
    """CA bundle that signed the broker's certificate (``mqtts://``)."""
    mqtt_cert_file: FilePath | None = None
    """Client certificate for mutual TLS; goes with ``mqtt_key_file``."""
    mqtt_key_file: FilePath | None = None

    def broker(self) -> BrokerAddress:
        return BrokerAddress.parse(self.mqtt_url).with_certificates(
            self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file
        )


class AgentSettings(MqttSettings):
    outbox_path: Path = Path("coreline-outbox.db")
    outbox_budget_mb: Annotated[int, Field(ge=1)] = 256
    outbox_resend_window_h: Annotated[float, Field(gt=0)] = 168.0

    @property
    def outbox_resend_window(self) -> timedelta:
        return timedelta(hours=self.outbox_resend_window_h)


class ConfigurationError(Exception):
    """Configuration that cannot work; the message says what to fix."""


SettingsT = TypeVar("SettingsT", bound=MqttSettings)


def load(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Settings from the environment, with command-line flags taking precedence."""
    given: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = settings_class(**given)
        settings.broker()  # certificate files go together: fail now, not at connect
    except ValidationError as error:
        problems = "; ".join(
            f"CORELINE_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(problems) from None
    except MqttUrlError as error:
        raise ConfigurationError(f"CORELINE_MQTT_*: {error}") from None
    return settings
