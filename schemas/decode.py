"""Decode an MQTT event batch into sealed events and rejections.  Pure: bytes in, values out.

The batch is judged as a whole only where it must be (size, JSON, envelope, which
device is speaking, a malformed seal); after that every event stands or falls on its own, so one bad
event never costs the good ones beside it their place in the store.
"""

import typing
from dataclasses import dataclass
from hashlib import sha256
from operator import attrgetter
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from schemas.canonical import GENESIS_HASH, ClosedShape, canonical_body
from schemas.device_events import DeviceEventModel
from schemas.events import DEVICE_EVENT_ADAPTER
from schemas.fields import FROZEN_STRICT_SHAPE, DeviceId
from schemas.rejection import Rejection, RejectionReason
from schemas.sealed import SealedEvent
from schemas.seals import BatchSeal, SealClaim
from schemas.streams import device_stream
from schemas.validation import (
    DeferredChecks,
    admission,
    counted_extras,
    describe,
    plain_schema,
    without_patterns,
)

MAX_BATCH_BYTES: Final = 256 * 1024
MAX_BATCH_EVENTS: Final = 500
_MAX_DETAIL: Final = 300
_EVENT_SEQ: Final = attrgetter("seq")


class _BatchEnvelope(BaseModel):
    model_config = FROZEN_STRICT_SHAPE

    device_id: DeviceId
    # Events are judged one by one below, so any JSON value is let through here.
    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
    # Protocol v1.1 (DESIGN §4.1); judged below, so a malformed seal is a
    # ``signature`` rejection rather than a ``schema`` one.
    seal: Any = None


_BATCH_ADAPTER: Final = TypeAdapter(_BatchEnvelope)
_validate_seal: Final = TypeAdapter(BatchSeal).validator.validate_python
# The core validators themselves: ``TypeAdapter.validate_python`` adds a Python frame a call.
_validate_event: Final = DEVICE_EVENT_ADAPTER.validator.validate_python
_validate_batch: Final = _BATCH_ADAPTER.validator.validate_python
# The same rules into plain dicts (``plain_schema``): the store needs only the
# envelope and the canonical bytes, so the gateway builds no models.  The models'
# own cross-member rules (``window_end`` after ``window_start``…) run from here.
# ``hash``'s pattern is left to the hash check: an event is accepted only when its
# ``hash`` equals the SHA-256 hex digest of its canonical form, which the pattern
# (64 lower-case hex digits) then holds for, and each refusal after validation asks
# the models first (``_refuse``), so an event whose only fault is its hash's form is
# refused for that, in the same words, as before.
# Extra members are refused by counting (``counted_extras``): each event and its
# ``data`` must have as many members as their typed dicts, else the models judge it.
_CHECKS: Final[DeferredChecks] = {}
_PLAIN_SCHEMA, _COUNTS = counted_extras(
    without_patterns(plain_schema(DEVICE_EVENT_ADAPTER.core_schema, _CHECKS), ("hash",))
)
_validate_plain: Final = SchemaValidator(_PLAIN_SCHEMA).validate_python
_ADMITS: Final = {
    event_type: admission(counts, _CHECKS.get(event_type, []))
    for event_type, counts in _COUNTS.items()
}
"""By event type: the counts and the models' rules across members that an event
the plain validator passed must still pass (``admission``)."""


def _event_type(model: type[BaseModel]) -> str:
    (name,) = typing.get_args(model.model_fields["type"].annotation)
    return str(name)


_SHAPES: Final[dict[str, ClosedShape | None]] = {
    _event_type(model): ClosedShape.of(model) for model in typing.get_args(DeviceEventModel)
}
_WRITERS: Final = {
    event_type: shape.write for event_type, shape in _SHAPES.items() if shape is not None
}
"""Each device event type's canonical writer (``ClosedShape.write``); none: the generic one."""


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """What one MQTT message yielded: events to append and input to dead-letter."""

    events: tuple[SealedEvent, ...]
    rejections: tuple[Rejection, ...]
    seal: SealClaim | None = None
    """The batch's seal (protocol v1.1); ``None``: the batch came unsealed.  Whether
    it verifies is the gateway's to decide, against the device's registered keys."""


def decode_event_batch(topic_device_id: str, payload: bytes) -> DecodedBatch:
    """Decode ``payload`` received on the events topic of ``topic_device_id``.

    Never raises on any input: every problem comes back as a ``Rejection``.
    """
    if len(payload) > MAX_BATCH_BYTES:
        return _whole(
            RejectionReason.OVERSIZE,
            f"payload is {len(payload)} bytes; a batch may be at most {MAX_BATCH_BYTES}",
            payload,
            topic_device_id,
        )
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        return _whole(
            RejectionReason.MALFORMED, f"not UTF-8 JSON: {error}", payload, topic_device_id
        )
    try:
        batch: _BatchEnvelope = _validate_batch(document)
    except ValidationError as error:
        return _whole(RejectionReason.SCHEMA, describe(error), payload, topic_device_id)
    if batch.device_id != topic_device_id:
        return _whole(
            RejectionReason.IDENTITY,
            f"batch device_id {batch.device_id!r} was published on the topic of "
            f"{topic_device_id!r}",
            payload,
            topic_device_id,
        )
    seal: BatchSeal | None = None
    if batch.seal is not None:
        try:
            seal = _validate_seal(batch.seal)
        except ValidationError as error:
            detail = f"malformed seal: {describe(error)}"
            return _whole(RejectionReason.SIGNATURE, detail, payload, topic_device_id)
    events: list[SealedEvent] = []
    rejections: list[Rejection] = []
    stream_id = device_stream(batch.device_id)
    for raw_event in batch.events:
        outcome = _decode_event(batch.device_id, stream_id, raw_event)
        if type(outcome) is SealedEvent:
            events.append(outcome)
        else:
            rejections.append(outcome)  # type: ignore[arg-type]
    claim = None if seal is None else _claim(batch.device_id, seal, events, rejections)
    return DecodedBatch(events=tuple(events), rejections=tuple(rejections), seal=claim)


def _claim(
    device_id: str, seal: BatchSeal, events: list[SealedEvent], rejections: list[Rejection]
) -> SealClaim:
    """The seal with the hash it must sign: that of the batch's last event, which
    must have decoded (a seal over anything else authenticates nothing)."""
    # Once per batch, but over every event: C-level getters and searches, no Python loop.
    seqs = list(map(_EVENT_SEQ, events))
    last = max(seqs, default=None)
    refused = [r.seq for r in rejections if r.seq is not None]
    if refused:
        last = max(last or 0, *refused)
    if last != seal.seq or last not in seqs:
        return SealClaim(device_id, seal, None)
    # The first decoded event of that seq, should a fork in the batch hold two.
    return SealClaim(device_id, seal, events[seqs.index(last)].hash)


def decode_device_event(device_id: str, raw_event: Any) -> SealedEvent | Rejection:
    """Validate one event of a batch already known to come from ``device_id``."""
    return _decode_event(device_id, device_stream(device_id), raw_event)


def _plain_fields(raw_event: Any) -> dict[str, Any] | None:
    """The event's fields if it is valid, by the plain validator and what it leaves to
    this module; ``None``: let the models judge it."""
    try:
        fields: dict[str, Any] = _validate_plain(raw_event)
    except ValidationError:
        return None
    # An extra member (or a mapping that is not a dict), or a rule across members broken.
    return fields if _ADMITS[fields["type"]](raw_event, fields) else None


def _decode_event(device_id: str, stream_id: str, raw_event: Any) -> SealedEvent | Rejection:
    fields = _plain_fields(raw_event)
    if fields is None:
        # Rare: validate again into the models, whose errors are the ones reported.
        try:
            fields = dict(_validate_event(raw_event))
        except ValidationError as error:
            return _reject(device_id, raw_event, RejectionReason.SCHEMA, describe(error))
    if type(raw_event) is not dict:  # pragma: no cover - validation refuses non-objects
        return _reject(
            device_id, raw_event, RejectionReason.SCHEMA, "an event must be a JSON object"
        )
    seq: int = fields["seq"]
    if fields["device_id"] != device_id:
        return _refuse(
            device_id,
            raw_event,
            RejectionReason.IDENTITY,
            f"event seq {seq} names device {fields['device_id']!r} inside a batch of {device_id!r}",
        )
    event_type: str = fields["type"]
    write = _WRITERS.get(event_type)
    try:
        body = canonical_body(raw_event) if write is None else write(raw_event)
    except ValueError as error:  # e.g. a float beyond what canonical JSON can represent
        return _refuse(
            device_id,
            raw_event,
            RejectionReason.SCHEMA,
            f"event seq {seq} has no canonical form: {error}",
        )
    hash_ = fields["hash"]
    if sha256(body).hexdigest() != hash_:
        return _refuse(
            device_id,
            raw_event,
            RejectionReason.INTEGRITY,
            f"event seq {seq}: hash does not match the SHA-256 of its canonical JSON",
        )
    prev_hash = fields["prev_hash"]
    if seq == 1 and prev_hash != GENESIS_HASH:
        return _refuse(
            device_id,
            raw_event,
            RejectionReason.INTEGRITY,
            "event seq 1 must have a prev_hash of 64 zeros",
        )
    return SealedEvent(
        device_id,
        seq,
        fields["event_id"],
        event_type,
        fields["occurred_at"],
        hash_,
        prev_hash,
        body,
        stream_id,
    )


def _refuse(device_id: str, raw_event: Any, reason: RejectionReason, detail: str) -> Rejection:
    """The refusal of an event the plain validator passed: the models' own refusal
    if they have one (``hash``'s pattern was left out there), else this one."""
    try:
        _validate_event(raw_event)
    except ValidationError as error:
        return _reject(device_id, raw_event, RejectionReason.SCHEMA, describe(error))
    return _reject(device_id, raw_event, reason, detail)


def _reject(device_id: str, raw_event: Any, reason: RejectionReason, detail: str) -> Rejection:
    raw_seq = raw_event.get("seq") if isinstance(raw_event, dict) else None
    seq = raw_seq if type(raw_seq) is int else None
    return Rejection(reason, detail[:_MAX_DETAIL], _raw_bytes(raw_event), device_id, seq)


def _whole(reason: RejectionReason, detail: str, payload: bytes, device_id: str) -> DecodedBatch:
    rejection = Rejection(reason, detail[:_MAX_DETAIL], payload, device_id)
    return DecodedBatch(events=(), rejections=(rejection,))


def _raw_bytes(raw_event: Any) -> bytes:
    try:
        return orjson.dumps(raw_event)
    except TypeError:
        return repr(raw_event).encode()
