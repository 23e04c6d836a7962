"""``COPY (…) TO STDOUT`` through a SQLAlchemy connection to PostgreSQL, streamed:
the driver (psycopg, owned by this package) hands its blocks on gathered into pieces,
so a caller outside the store streams a million rows without importing the driver."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection


def copy_out(
    connection: Connection,
    statement: str,
    parameters: Sequence[Any] | Mapping[str, Any] | None,
    piece_bytes: int,
    setup: Sequence[str] = (),
) -> Iterator[bytes]:
    """The output of ``statement`` (a ``COPY … TO STDOUT``) in pieces of at least
    ``piece_bytes`` (the last may be shorter); ``setup`` runs first on the same cursor
    (``SET LOCAL …`` for this transaction)."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise ValueError("the connection is closed")
    with driver.cursor() as cursor:
        for line in setup:
            cursor.execute(line)
        piece = bytearray()
        with cursor.copy(statement, parameters) as copy:
            for block in copy:
                piece += block
                if len(piece) >= piece_bytes:
                    yield bytes(piece)
                    piece.clear()
        yield bytes(piece)
