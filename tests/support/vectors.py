"""Loading the shared protocol vectors."""

import json
from pathlib import Path
from typing import Any

import orjson

STREAM_DEVICES = ("HP-000011", "HP-000012", "HP-000013")


def load_stream(vectors_dir: Path, device_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((vectors_dir / f"{device_id}.stream.json").read_text())
    return document


def load_invalid(vectors_dir: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((vectors_dir / "invalid.json").read_text())
    return cases


def batch_payload(device_id: str, events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"device_id": device_id, "events": events})
