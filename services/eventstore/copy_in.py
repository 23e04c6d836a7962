"""``COPY … FROM STDIN`` through a SQLAlchemy connection to PostgreSQL: rows written
in bulk inside the connection's transaction, without one statement (and one round of
SQLAlchemy's and the driver's parameter handling) per row.  The driver (psycopg) is
owned by this package, so a caller outside the store writes rows without importing it."""

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final

import orjson
from psycopg import errors, sql
from sqlalchemy import Connection

from services.eventstore.errors import StoreRefusedValueError

_KEYS_AS_TEXT: Final = orjson.OPT_NON_STR_KEYS
"""Keys as ``json.dumps`` writes them (an int key as its digits); an
``orjson.Fragment`` (a document serialised already) is written as it is."""


class KeyTakenError(StoreRefusedValueError):
    """A row's key was in the table already, or twice among the rows: the ``COPY``
    wrote nothing, and the transaction must be rolled back (to a savepoint taken
    before it, say) before it can be used again."""


def copy_in(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    documents: Collection[str] = (),
) -> None:
    """Write ``rows`` (each a mapping holding every one of ``columns``) into ``table``
    by ``COPY``.  ``documents`` names the columns of JSON documents, sent as their JSON
    text (a ``json``/``jsonb`` column parses it as an ``INSERT`` would the document,
    which may be an ``orjson.Fragment``;
    ``None`` there is JSON ``null``, as SQLAlchemy's ``JSON`` type writes it); in the
    other columns ``None`` is SQL ``NULL``.  The rows become visible when the
    connection's transaction commits, and a row that breaks a constraint fails the
    whole ``COPY``: there is no ``ON CONFLICT``; a key already taken raises
    ``KeyTakenError``."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise ValueError("the connection is closed")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    # The column positions holding documents, found once instead of per row.
    json_at = [index for index, name in enumerate(columns) if name in documents]
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[name] for name in columns]
                for index in json_at:
                    values[index] = orjson.dumps(values[index], option=_KEYS_AS_TEXT).decode()
                copy.write_row(values)
    except errors.UniqueViolation as error:
        raise KeyTakenError(f"a key of {table} is taken: {error.diag.message_detail}") from error
