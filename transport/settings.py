"""How a Coreline process reaches the broker, from ``CORELINE_MQTT_*`` variables
(DESIGN §10), and the one way every process loads its settings: flags win over the
environment, and anything unusable fails at start-up with a message that says what
to fix."""

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, FilePath, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from transport.address import BrokerAddress, MqttUrlError

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
