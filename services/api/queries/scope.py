"""What a principal may see: the one place the API applies custody (DESIGN §9).

Two kinds of data, one rule.  Rows that carry their clinic (sessions, alerts, devices,
cartridge weeks) were given it once, when they were folded: ``scoped`` filters them
in SQL.  A device's own events (its history, a session's events, chain findings, a
device page's open faults) are judged one by one by ``EventScope.sees``, which asks
``services.projections.custody.event_owner`` whose each one is.  Manufacturer and
fleet-wide auditor tokens see everything; a clinic-scoped token, of either role,
sees what its clinic owns and nothing else.

Read models trail the store by the projector's lag, so an event the projector has
not folded may follow a reassignment it has not folded either.  ``event_scope``
looks for one in the registry stream and, when there is, leaves every event past
what the read models have folded to nobody until they catch up: a clinic may see its
own newest events a moment late, never the next holder's.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, bindparam, select, true

from schemas.streams import device_stream, registry_stream
from services.api.access import Principal
from services.api.models import EventOut
from services.api.queries.tables import READ
from services.eventstore import EventStore
from services.projections.custody import Custody, event_owner
from services.projections.read_store import custody_interval

_custody, _sessions, _devices = READ.custody, READ.sessions, READ.devices


def scoped(principal: Principal, clinic_column: Any) -> ColumnElement[bool]:
    """Rows owned by the principal's clinic (every row for a fleet-wide principal)."""
    return true() if principal.clinic_id is None else clinic_column == principal.clinic_id


def scoped_bound(clinic_column: ColumnElement[Any]) -> ColumnElement[bool]:
    """``scoped`` for a clinic-scoped principal in a statement built once for them all:
    the principal's clinic is bound as ``scope`` (a fleet-wide one's omits the check)."""
    return clinic_column == bindparam("scope")


@dataclass(frozen=True, slots=True)
class EventScope:
    """Which of one device's events a clinic-scoped principal sees."""

    clinic_id: str
    custody: Custody
    session_clinics: Mapping[str, str | None]
    """The clinic of each session the events in question name, as folded."""
    attributed_through: int | None = None
    """Events past this seq are nobody's yet (an assignment is still to be folded);
    ``None``: custody is folded as far as the store goes."""

    def sees(self, seq: int, session_id: str | None) -> bool:
        known = session_id is not None and session_id in self.session_clinics
        if not known and self.attributed_through is not None and seq > self.attributed_through:
            return False
        return event_owner(self.custody, seq, session_id, self.session_clinics) == self.clinic_id

    def own_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        """A device read model's summary without what another clinic owns: its open
        session and the faults raised in its intervals."""
        open_session = summary.get("open_session_id")
        faults = [
            fault
            for fault in summary.get("open_faults", ())
            # Rows folded before faults kept their seq cannot be placed: hidden.
            if "raised_seq" in fault and self.sees(fault["raised_seq"], None)
        ]
        if open_session is not None and self.session_clinics.get(open_session) != self.clinic_id:
            open_session = None
        own = {**summary, "open_session_id": open_session, "open_faults": faults}
        interlocks: dict[str, Any] = summary.get("interlocks") or {}
        refused = interlocks.get("last_refused_install")
        if refused is not None and not self.sees(refused["seq"], None):
            # What the device engaged and holds now is its current state; a cartridge
            # refused while another clinic held it is that clinic's history.
            own["interlocks"] = {**interlocks, "last_refused_install": None}
        return own


def custodies(connection: Connection, device_ids: Iterable[str]) -> dict[str, Custody]:
    """The folded custody of each device (an empty one: never assigned)."""
    wanted = list(device_ids)
    rows = connection.execute(
        select(_custody)
        .where(_custody.c.device_id.in_(wanted))
        .order_by(_custody.c.device_id, _custody.c.assigned_seq)
    )
    intervals: dict[str, list[Any]] = {device_id: [] for device_id in wanted}
    for row in rows:
        intervals[row.device_id].append(custody_interval(row))
    return {device_id: Custody(device_id, tuple(found)) for device_id, found in intervals.items()}


def session_clinics(connection: Connection, session_ids: Iterable[str]) -> dict[str, str | None]:
    """The clinic each of these folded sessions belongs to (unknown ones are absent)."""
    wanted = sorted(set(session_ids))
    if not wanted:
        return {}
    rows = connection.execute(
        select(_sessions.c.session_id, _sessions.c.clinic_id).where(
            _sessions.c.session_id.in_(wanted)
        )
    )
    return {row.session_id: row.clinic_id for row in rows}


def summary_scopes(
    connection: Connection, principal: Principal, summaries: Mapping[str, dict[str, Any]]
) -> dict[str, EventScope] | None:
    """Scopes to cut device summaries (``EventScope.own_summary``) by, per device;
    ``None`` for a fleet-wide principal, who sees them whole.  Everything a summary
    holds is folded, so custody as folded judges it."""
    if principal.clinic_id is None:
        return None
    held = custodies(connection, summaries)
    open_sessions = [summary.get("open_session_id") for summary in summaries.values()]
    clinics = session_clinics(connection, [found for found in open_sessions if found])
    return {
        device_id: EventScope(principal.clinic_id, held[device_id], clinics)
        for device_id in summaries
    }


def event_scope(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    session_ids: Iterable[str] = (),
) -> EventScope | None:
    """The scope of ``device_id``'s events naming (at most) ``session_ids``, for a
    clinic-scoped principal; ``None`` for a fleet-wide one, who sees them all."""
    if principal.clinic_id is None:
        return None
    custody = custodies(connection, [device_id])[device_id]
    return EventScope(
        principal.clinic_id,
        custody,
        session_clinics(connection, session_ids),
        _attributed_through(connection, store, custody),
    )


def visible_events(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    events: Sequence[EventOut],
) -> list[EventOut]:
    """The events of ``device_id`` the principal sees, in the order given."""
    named = {name for event in events if (name := _session_of(event.data)) is not None}
    scope = event_scope(connection, store, principal, device_id, named)
    if scope is None:
        return list(events)
    return [event for event in events if scope.sees(event.seq, _session_of(event.data))]


def visible_seqs(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    seqs: Iterable[int],
) -> set[int]:
    """Which of these seqs of ``device_id``'s stream the principal sees: for chain
    findings, which name a seq and may name one whose stored row is missing or
    altered (judged by its seq alone)."""
    wanted = sorted(set(seqs))
    if principal.clinic_id is None:
        return set(wanted)
    named: dict[int, str | None] = {}
    for seq in wanted:
        stored = store.read_stream(device_stream(device_id), from_seq=seq, to_seq=seq)
        named[seq] = _session_in_body(stored[0].body) if stored else None
    sessions = {session for session in named.values() if session is not None}
    scope = event_scope(connection, store, principal, device_id, sessions)
    return {seq for seq in wanted if scope is None or scope.sees(seq, named[seq])}


def _session_in_body(body: bytes) -> str | None:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = event.get("data") if isinstance(event, dict) else None
    return _session_of(data) if isinstance(data, dict) else None


def _session_of(data: Mapping[str, Any]) -> str | None:
    named = data.get("session_id")
    return named if isinstance(named, str) else None


def _attributed_through(connection: Connection, store: EventStore, custody: Custody) -> int | None:
    after = store.read_stream(
        registry_stream(custody.device_id), from_seq=custody.assignments_through + 1
    )
    if not any(event.type == "device.assigned" for event in after):
        return None
    # The device row and the custody rows commit together, so every seq the row has
    # folded was judged by custody as it stands.
    row = connection.execute(
        select(_devices.c.summary).where(_devices.c.device_id == custody.device_id)
    ).first()
    summary: dict[str, Any] = {} if row is None else row[0]
    return int(summary.get("applied_through", 0))
