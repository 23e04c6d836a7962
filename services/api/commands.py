"""The write side of the API: what people do becomes platform events (DESIGN §4),
appended after the newest event of their stream with no other writer in between
(``EventStore.append_next``).  Read models show a change once the projector has
folded its event, usually within a second.

Changes to configuration and identities (policies, bounds, webhooks, users, tokens)
are recorded with ``record_change``: see its docstring for how to call it."""

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas import CHANGE_EVENT_TYPES, GENESIS_HASH, SealedEvent, describe, seal, utc_text
from schemas.seals import ED25519, b64url, key_id_of
from schemas.streams import (
    CHANGE_DEVICE_ID,
    alert_stream,
    device_stream,
    is_change_stream,
    registry_stream,
)
from seal_keys import usable_public_key
from services.api.identity.lifecycle import refuse_if_decommissioned
from services.api.models import Accepted
from services.api.problems import Problem, bad_request, conflict, not_found
from services.eventstore import EventStore, StoredEvent, load_keyring

_ALERT_MOVES = {"alert.acknowledged": ("open",), "alert.resolved": ("open", "acknowledged")}
_STATE_AFTER = {
    # Also an incident raised again (an update) over an acknowledged alert: the head
    # alone cannot tell, and acknowledging what was added since is what a person does.
    "alert.raised": "open",
    # A higher needle-life rung re-opens attention, acknowledged or not (docs/alerts.md).
    "alert.escalated": "open",
    "alert.acknowledged": "acknowledged",
    "alert.resolved": "resolved",
}


def register_device(store: EventStore, device_id: str, model: str, author: str) -> Accepted:
    data = {"model": model, "registered_by": author}
    return _append(store, _after(registry_stream(device_id), device_id, "device.registered", data))


def assign_device(
    store: EventStore, device_id: str, clinic_id: str | None, author: str
) -> Accepted:
    data = {"clinic_id": clinic_id, "assigned_by": author}
    build = _after(registry_stream(device_id), device_id, "device.assigned", data)
    if clinic_id is None:
        return _append(store, build)  # taking a device back is always allowed

    def checked(head: StoredEvent | None) -> SealedEvent:
        # A decommissioned device is nobody's to inherit (docs/device-identity.md).
        refuse_if_decommissioned(store, device_id)
        return build.build(head)

    return _append(store, _Builder(build.stream_id, checked))


def record_service(
    store: EventStore, device_id: str, notes: str, actuations_at_service: int | None, author: str
) -> Accepted:
    data = {"performed_by": author, "notes": notes, "actuations_at_service": actuations_at_service}
    return _append(store, _after(registry_stream(device_id), device_id, "device.serviced", data))


def register_key(store: EventStore, device_id: str, public_key: str, author: str) -> Accepted:
    """Register a seal key (DESIGN §4.1): from now on the device's batches must be
    sealed.  A key registered already (revoked or not) is a 409."""
    try:
        raw = usable_public_key(public_key)
    except ValueError as error:
        raise bad_request(f"public key: {error}") from None
    key_id = key_id_of(raw)
    data = {"key_id": key_id, "public_key": b64url(raw), "algorithm": ED25519,
            "registered_by": author}  # fmt: skip
    build = _after(registry_stream(device_id), device_id, "device.key_registered", data)

    def checked(head: StoredEvent | None) -> SealedEvent:
        if key_id in load_keyring(store, device_id).keys:
            raise conflict(f"key {key_id} is registered for {device_id} already")
        return build.build(head)

    return _append(store, _Builder(build.stream_id, checked))


def revoke_key(
    store: EventStore, device_id: str, key_id: str, reason: str, author: str
) -> Accepted:
    """Revoke a seal key: later seals by it are refused, the ones it made stay valid.

    The revocation records the highest seq the key had sealed, read in the write
    transaction of the registry stream (on SQLite no seal can be stored meanwhile;
    on PostgreSQL a gateway may store one more until its key cache refreshes, which
    ``coreline verify`` then reports)."""

    def checked(head: StoredEvent | None) -> SealedEvent:
        key = load_keyring(store, device_id).keys.get(key_id)
        if key is None:
            raise not_found("key")
        if key.revoked:
            raise conflict(f"key {key_id} of {device_id} is revoked already")
        sealed = [seal.seq for seal in store.read_seals(device_stream(device_id))
                  if seal.key_id == key_id]  # fmt: skip
        data = {"key_id": key_id, "reason": reason, "revoked_by": author,
                "sealed_through": max(sealed, default=0)}  # fmt: skip
        return _after(registry_stream(device_id), device_id, "device.key_revoked", data).build(head)

    return _append(store, _Builder(registry_stream(device_id), checked))


def move_alert(
    store: EventStore, alert_id: str, device_id: str, kind: str, note: str | None, author: str
) -> Accepted:
    """Acknowledge or resolve: decided against the alert's own stream, so a resolution
    by the alert engine a moment earlier is seen, and the move refused with a 409."""
    data = {"alert_id": alert_id, "by": author, "note": note}
    build = _after(alert_stream(alert_id), device_id, kind, data)

    def checked(head: StoredEvent | None) -> SealedEvent:
        state = _STATE_AFTER.get(head.type, "unknown") if head is not None else "missing"
        if state not in _ALERT_MOVES[kind]:
            raise conflict(f"alert {alert_id} is {state}: it cannot be {kind.split('.')[1]}")
        return build.build(head)

    return _append(store, _Builder(build.stream_id, checked))


def record_platform_event(
    store: EventStore,
    stream_id: str,
    device_id: str,
    kind: str,
    data: dict[str, Any],
    check: Callable[[StoredEvent | None], None] | None = None,
) -> Accepted:
    """Append a platform event of ``kind`` after the stream's newest (``check`` may
    refuse, with a ``Problem``, from that newest event)."""
    build = _after(stream_id, device_id, kind, data)

    def checked(head: StoredEvent | None) -> SealedEvent:
        if check is not None:
            check(head)
        return build.build(head)

    return _append(store, _Builder(stream_id, checked))


class ChangeRecordError(ValueError):
    """A change that cannot be recorded as asked: a caller's mistake (an unknown kind,
    a stream that is not a change stream, data the kind's schema does not allow)."""


def record_change(
    store: EventStore,
    stream_id: str,
    kind: str,
    data: Mapping[str, Any],
    author: str,
    *,
    after_seq: int | None = None,
) -> Accepted:
    """Record a change a person made as a platform event naming its author.

    ``stream_id`` is the changed thing's stream (``schemas.streams``:
    ``clinic_config_stream``, ``FLEET_CONFIG_STREAM``, ``user_stream``,
    ``token_stream``); ``kind`` one of ``schemas.CHANGE_EVENT_TYPES``; ``data`` the
    fields its schema (``schemas.change_events``) names, without ``by``: the
    ``author`` (``Principal.author``, or ``cli_operator()``) is added as ``by``.
    Secrets have no field to go in: a webhook secret, a password or a token passed
    in ``data`` is refused with ``ChangeRecordError``, like any unknown field.

    Record the change before applying it, so that a failure leaves no unrecorded
    change (and make the apply idempotent, so a retry heals a failed one).  With
    ``after_seq`` (the stream's seq the caller decided from; 0 for an empty stream)
    a change someone else recorded meanwhile is refused with a 409, instead of a
    ``previous`` value that is no longer true.
    """
    if kind not in CHANGE_EVENT_TYPES:
        raise ChangeRecordError(f"{kind!r} is not a change event type: see CHANGE_EVENT_TYPES")
    if not is_change_stream(stream_id):
        raise ChangeRecordError(f"{stream_id!r} is not a change stream: see schemas.streams")
    if "by" in data:
        raise ChangeRecordError("data names its author in `by` itself: pass author instead")
    build = _after(stream_id, CHANGE_DEVICE_ID, kind, {**data, "by": author})

    def checked(head: StoredEvent | None) -> SealedEvent:
        found = 0 if head is None else head.seq
        if after_seq is not None and found != after_seq:
            raise conflict(f"{stream_id} changed meanwhile (now at seq {found}): try again")
        try:
            return build.build(head)
        except ValidationError as error:
            raise ChangeRecordError(f"{kind}: {describe(error)}") from None

    return _append(store, _Builder(stream_id, checked))


@dataclass(frozen=True, slots=True)
class _Builder:
    stream_id: str
    build: Callable[[StoredEvent | None], SealedEvent]


def _after(stream_id: str, device_id: str, kind: str, data: dict[str, Any]) -> _Builder:
    def build(head: StoredEvent | None) -> SealedEvent:
        seq, prev_hash = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
        now = datetime.now(UTC)
        if head is not None and head.occurred_at > now:
            now = head.occurred_at  # a stream's times never run backwards
        return seal(
            {
                "event_id": str(uuid.uuid4()),
                "device_id": device_id,
                "seq": seq,
                "type": kind,
                "occurred_at": utc_text(now),
                "schema_version": 1,
                "data": data,
                "prev_hash": prev_hash,
            },
            stream_id,
        )

    return _Builder(stream_id, build)


def _append(store: EventStore, builder: _Builder) -> Accepted:
    appended = store.append_next(builder.stream_id, builder.build)
    if appended is None:  # the builders here always build; this guards the contract
        raise Problem(
            500, "not-recorded", "Not recorded", f"nothing appended to {builder.stream_id}"
        )
    return Accepted(
        stream_id=builder.stream_id,
        seq=appended.seq,
        event_id=str(appended.event_id),
        type=appended.type,
    )
