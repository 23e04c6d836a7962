"""``CORELINE_DATABASE_URL``: which adapter, and how to reach it (DESIGN §10, normative)."""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from schemas.urls import redact
from services.eventstore.errors import DatabaseUnavailableError, UnsupportedDatabaseUrlError


class Backend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    backend: Backend
    url: str

    @classmethod
    def parse(cls, url: str) -> "DatabaseUrl":
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            return cls(Backend.SQLITE, url)
        if url.startswith(("postgresql://", "postgres://")):
            return cls(Backend.POSTGRES, url)
        raise UnsupportedDatabaseUrlError(
            f"unsupported database URL {redact(url)!r}: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host:port/dbname (or postgresql:///dbname?host=/socket/dir)"
        )

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    @property
    def sqlalchemy_url(self) -> str:
        """The same database for SQLAlchemy (used by Alembic), through psycopg 3."""
        rest = self.url.split("://", 1)[1]
        return f"postgresql+psycopg://{rest}"


def unreachable(url: str, error: Exception) -> DatabaseUnavailableError:
    """A one-line, password-free account of why the database did not answer."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    first_line = text.splitlines()[0] if text else type(cause).__name__
    return DatabaseUnavailableError(f"cannot reach the database {redact(url)}: {first_line}")
