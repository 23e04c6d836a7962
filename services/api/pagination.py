"""Cursor pagination: a page of items and an opaque cursor for the next one.

Cursors carry the sort key of the last item (keyset pagination), so a page costs
the same at the millionth row as at the first, and rows inserted meanwhile never
shift later pages.
"""

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel

from services.api.problems import bad_request

MAX_PAGE: Final = 500

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
CursorParam = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` of the previous page."),
]


ItemT = TypeVar("ItemT", bound=BaseModel)
RowT = TypeVar("RowT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None
    """Pass as `cursor` for the next page; `null` on the last page."""


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
    """The sort key in ``cursor``, checked against ``types``; a 400 if it is not one."""
    if cursor is None:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(isinstance(part, kind) for part, kind in zip(key, types, strict=True))
    ):
        raise _foreign_cursor()
    return key


def decode_time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """A ``[moment, id]`` cursor of a newest-first list."""
    key = decode_cursor(cursor, (str, str))
    if key is None:
        return None
    try:
        return datetime.fromisoformat(key[0]), key[1]
    except ValueError:
        raise _foreign_cursor() from None


def time_key(moment: datetime, item_id: str) -> list[Any]:
    return [moment.isoformat(), item_id]


def _foreign_cursor() -> Exception:
    return bad_request("cursor is not one this API gave out: pass next_cursor unchanged")


def next_cursor(rows: list[RowT], limit: int, key: Callable[[RowT], list[Any]]) -> str | None:
    """The cursor after ``rows`` (one more than ``limit`` was fetched to know)."""
    if len(rows) <= limit:
        return None
    return encode_cursor(key(rows[limit - 1]))
