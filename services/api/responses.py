"""JSON bodies written once, by the model that checked them.

A handler that returns a model has FastAPI validate it again against the route's
``response_model`` (for a synchronous handler, on another trip through the thread
pool) and then encode it.  A model built by the handler is valid already, so the
hot read routes return its JSON directly; the route still declares its
``response_model``, so the OpenAPI document describes the same body."""

from typing import Final

from fastapi import Response
from pydantic import BaseModel

JSON_MEDIA_TYPE: Final = "application/json"


def json_body(model: BaseModel) -> Response:
    """``model`` as FastAPI would send it: by alias, every field."""
    return Response(model.model_dump_json(by_alias=True), media_type=JSON_MEDIA_TYPE)
