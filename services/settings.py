"""The platform processes' configuration from ``CORELINE_*`` variables (DESIGN §10):
the broker settings every process shares, plus the database."""

from typing import Annotated, Any

from pydantic import AfterValidator

from services.eventstore import DatabaseUrl, UnsupportedDatabaseUrlError
from transport import ConfigurationError, MqttSettings, load

__all__ = ["ConfigurationError", "Settings", "load_settings"]

DEFAULT_DATABASE_URL = "sqlite:///coreline.db"


def _supported_database(url: str) -> str:
    try:
        DatabaseUrl.parse(url)
    except UnsupportedDatabaseUrlError as error:
        raise ValueError(str(error)) from error
    return url


class Settings(MqttSettings):
    database_url: Annotated[str, AfterValidator(_supported_database)] = DEFAULT_DATABASE_URL


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line flags taking precedence."""
    return load(Settings, **overrides)
