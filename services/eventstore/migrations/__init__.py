"""Alembic migrations of the PostgreSQL schema (run with ``coreline db upgrade``)."""

from pathlib import Path
from typing import Final

SCHEMA_REVISION: Final = "0011"
"""The revision this code needs; ``PostgresEventStore`` refuses any other."""

MIGRATIONS_DIR: Final = Path(__file__).parent
