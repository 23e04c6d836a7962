"""JSON bodies written once, by the model that checked them.

A handler that returns a model has FastAPI validate it again against the route's
``response_model`` (for a synchronous handler, on another trip through the thread
pool) and then encode it.  A model built by the handler is valid already, so the
hot read routes return its JSON directly; the route still declares its
``response_model``, so the OpenAPI document describes the same body.  A page of
devices is not built as models at all: its items are the model's fields, written as
the model would write them."""

from collections.abc import Sequence
from typing import Any, Final

import orjson
from fastapi import Response
from pydantic import BaseModel

JSON_MEDIA_TYPE: Final = "application/json"
# pydantic writes a UTC time with ``Z``; otherwise orjson's JSON is pydantic's, byte
# for byte (tests/unit/test_page_body.py).
_AS_PYDANTIC: Final = orjson.OPT_UTC_Z


def json_body(model: BaseModel) -> Response:
    """``model`` as FastAPI would send it: by alias, every field."""
    return Response(model.model_dump_json(by_alias=True), media_type=JSON_MEDIA_TYPE)


def page_body(items: Sequence[dict[str, Any]], following: str | None) -> Response:
    """A ``Page`` of ``items``, each a model's fields in its order and holding what the
    model would (floats as floats, times aware), as that ``Page`` would send it: a
    model built per item only to be written cost more than reading the page's rows."""
    page = {"items": items, "next_cursor": following}
    return Response(orjson.dumps(page, option=_AS_PYDANTIC), media_type=JSON_MEDIA_TYPE)
