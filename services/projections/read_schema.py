"""Whether the read-model tables in a database are the shape this release writes.

The tables are created when missing, never altered: a column a release adds to a
read model is filled by folding the events again, which only ``coreline replay``
does.  The projector asks here at start-up, and rebuilds before folding a single
event into tables that lack a column (a fold would fail on the first row); an index
a release adds is built in place, since the rows it covers are already right.
"""

from dataclasses import dataclass

import sqlalchemy
from sqlalchemy import Engine

from services.projections.tables import ReadTables


@dataclass(frozen=True, slots=True)
class ReadSchemaGap:
    """What the stored read models lack, by table."""

    columns: dict[str, list[str]]
    indexes: list[sqlalchemy.Index]

    @property
    def needs_replay(self) -> bool:
        return bool(self.columns)

    def describe(self) -> str:
        return "; ".join(
            f"{table} lacks {', '.join(missing)}" for table, missing in self.columns.items()
        )


def read_schema_gap(engine: Engine, tables: ReadTables) -> ReadSchemaGap:
    """Compares the tables of ``tables`` that exist in the database with their
    declaration; a table that does not exist yet is no gap (it is created empty)."""
    inspector = sqlalchemy.inspect(engine)
    stored = set(inspector.get_table_names())
    columns: dict[str, list[str]] = {}
    indexes: list[sqlalchemy.Index] = []
    for table in tables.metadata.sorted_tables:
        if table.name not in stored:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        if missing:
            columns[table.name] = missing
        named = {index["name"] for index in inspector.get_indexes(table.name)}
        indexes += [index for index in table.indexes if index.name not in named]
    return ReadSchemaGap(columns, indexes)


def build_missing_indexes(engine: Engine, gap: ReadSchemaGap) -> None:
    for index in gap.indexes:
        index.create(engine, checkfirst=True)
