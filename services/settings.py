"""Process configuration from ``CORELINE_*`` environment variables (DESIGN §10)."""

from typing import Annotated, Any

from pydantic import AfterValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.eventstore import DatabaseUrl, UnsupportedDatabaseUrlError

DEFAULT_DATABASE_URL = "sqlite:///coreline.db"


def _supported_database(url: str) -> str:
    try:
        DatabaseUrl.parse(url)
    except UnsupportedDatabaseUrlError as error:
        raise ValueError(str(error)) from error
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    database_url: Annotated[str, AfterValidator(_supported_database)] = DEFAULT_DATABASE_URL


class ConfigurationError(Exception):
    """Configuration that cannot work; the message says what to fix."""


def load_settings(**overrides: str | None) -> Settings:
    """Settings from the environment, with command-line flags taking precedence."""
    given: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"CORELINE_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(problems) from None
