"""The platform processes' configuration from ``CORELINE_*`` variables (DESIGN §10):
the broker settings every process shares, plus the database and the log key."""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from services.eventstore import Backend, DatabaseUrl, UnsupportedDatabaseUrlError
from services.transparency import DEFAULT_ORIGIN
from transport import ConfigurationError, MqttSettings, load

__all__ = ["ConfigurationError", "Settings", "load_settings"]

DEFAULT_DATABASE_URL = "sqlite:///coreline.db"
LOG_KEY_NAME = "coreline-log.key"


def _supported_database(url: str) -> str:
    try:
        DatabaseUrl.parse(url)
    except UnsupportedDatabaseUrlError as error:
        raise ValueError(str(error)) from error
    return url


class Settings(MqttSettings):
    database_url: Annotated[str, AfterValidator(_supported_database)] = DEFAULT_DATABASE_URL
    log_key_file: Path | None = None
    """The Ed25519 key that signs the transparency log's checkpoints (PEM, mode 0600),
    kept outside the database: by default beside the SQLite file, else
    ``./coreline-log.key``."""
    log_origin: str = DEFAULT_ORIGIN
    """The checkpoints' origin line, which is also the signing key's name."""

    def log_key_path(self) -> Path:
        return log_key_path(self.database_url, self.log_key_file)

    def log_key_place(self) -> "LogKeyPlace":
        return LogKeyPlace(self.log_key_path(), self.log_origin)


@dataclass(frozen=True, slots=True)
class LogKeyPlace:
    """Where the transparency log's signing key is, and the name (origin) it signs as."""

    path: Path
    origin: str = DEFAULT_ORIGIN


def log_key_path(database_url: str, configured: Path | None = None) -> Path:
    """Where the log's signing key is: ``configured``, else beside the SQLite file,
    else ``./coreline-log.key``."""
    if configured is not None:
        return configured
    database = DatabaseUrl.parse(database_url)
    if database.backend is Backend.SQLITE:
        return database.sqlite_path.parent / LOG_KEY_NAME
    return Path(LOG_KEY_NAME)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line flags taking precedence."""
    return load(Settings, **overrides)
