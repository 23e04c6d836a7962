"""Changing a clinic's alert policy and the manufacturer's bounds on it: each change
recorded as a platform event naming its author (DESIGN §4), then applied.

Why record first, then apply: the event store and the ``alert_policies`` table are
written through different connections, so no one transaction covers both.  Recorded
first, a failed append leaves nothing changed, and a failed apply leaves a recorded
change that is not yet in force: the request fails, and its retry (a ``PUT`` is
idempotent) sees the change already recorded, records nothing twice, and applies it.
The other order could leave a change in force that nobody recorded, which is what
the record exists to rule out.

The bounds need no table at all: the newest ``policy_bounds.changed`` event of
``config:fleet`` *is* the bounds in force, so there is nothing to diverge from, and no
migration.  Both streams are short (people change settings rarely), so reading one
whole is cheap.
"""

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Engine

from schemas.streams import FLEET_CONFIG_STREAM, clinic_config_stream
from services.alerts import store as alert_store
from services.alerts.policy_bounds import (
    Bound,
    bounds_in_force,
    check_bounds,
    check_overrides,
)
from services.api.commands import record_change
from services.api.models import Accepted
from services.eventstore import EventStore


def recorded_bounds(store: EventStore) -> tuple[dict[str, Bound], int]:
    """What the manufacturer set (empty: only the defaults hold), and the stream's seq."""
    data, seq = _newest(store, FLEET_CONFIG_STREAM, "policy_bounds.changed")
    return _bounds(data["bounds"] if data else {}), seq


def current_bounds(store: EventStore) -> dict[str, Bound]:
    """The bounds in force: the defaults, with what the manufacturer set."""
    return bounds_in_force(recorded_bounds(store)[0])


def change_bounds(store: EventStore, bounds: Mapping[str, Bound], author: str) -> Accepted:
    """Record new bounds (``BoundsError`` if they cannot hold): they are in force at once."""
    check_bounds(bounds)
    previous, seq = recorded_bounds(store)
    data = {"bounds": _documents(bounds), "previous": _documents(previous)}
    return record_change(
        store, FLEET_CONFIG_STREAM, "policy_bounds.changed", data, author, after_seq=seq
    )


def change_policy(
    store: EventStore,
    engine: Engine,
    clinic_id: str,
    overrides: dict[str, float | str],
    author: str,
) -> Accepted | None:
    """Check ``overrides`` against the policy's own limits and the bounds in force
    (``PolicyError`` naming key, value and bound), record them unless they are the
    clinic's recorded policy already, and apply them.  ``None``: nothing new to record."""
    check_overrides(overrides, current_bounds(store))
    stream_id = clinic_config_stream(clinic_id)
    recorded, seq = _newest(store, stream_id, "policy.changed")
    accepted = None
    if recorded is None or recorded["overrides"] != overrides:
        # A clinic's policy set before changes were recorded is the table's row.
        previous = (
            alert_store.policy_overrides(engine, clinic_id)
            if recorded is None
            else recorded["overrides"]
        )
        data = {"clinic_id": clinic_id, "overrides": overrides, "previous": previous}
        accepted = record_change(store, stream_id, "policy.changed", data, author, after_seq=seq)
    alert_store.set_policy(engine, clinic_id, overrides)
    return accepted


def _newest(store: EventStore, stream_id: str, kind: str) -> tuple[dict[str, Any] | None, int]:
    """The data of the stream's newest ``kind`` event, and the stream's head seq."""
    events = store.read_stream(stream_id)
    for event in reversed(events):
        if event.type == kind:
            data: dict[str, Any] = orjson.loads(event.body)["data"]
            return data, events[-1].seq
    return None, events[-1].seq if events else 0


def _bounds(documents: Mapping[str, Mapping[str, float | None]]) -> dict[str, Bound]:
    return {key: Bound(bound.get("min"), bound.get("max")) for key, bound in documents.items()}


def _documents(bounds: Mapping[str, Bound]) -> dict[str, dict[str, float | None]]:
    return {key: bound.as_document() for key, bound in bounds.items()}
