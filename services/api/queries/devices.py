"""Devices as a principal may see them: the device read model, the registry and
the device's MQTT presence, joined."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    false,
    or_,
    select,
    true,
)

from services.api.access import Principal
from services.api.models import (
    CartridgeOut,
    DeviceDetail,
    DeviceOut,
    FaultOut,
    ForecastOut,
    InterlocksOut,
    UsageDay,
)
from services.api.queries.scope import EventScope, scoped, scoped_bound, summary_scopes
from services.api.queries.search import prefix_of
from services.api.queries.tables import READ, aware, presence, utc, written
from services.api.tokens import TOKEN_LOOKUP
from services.projections.cartridge import life_used_pct
from services.projections.maintenance import MaintenanceStatus

_devices, _registry, _sessions = READ.devices, READ.registry, READ.sessions
OFFLINE: Final = MaintenanceStatus.OFFLINE.value
INTEGRITY: Final = MaintenanceStatus.INTEGRITY.value


def _effective_status(online: Any) -> Any:
    # Offline outranks every other status but integrity (see
    # services.projections.maintenance): the fold cannot know it, presence does.
    return case(
        (_devices.c.status == INTEGRITY, INTEGRITY),
        (online == false(), OFFLINE),
        else_=_devices.c.status,
    ).label("effective_status")


effective_status: Final = _effective_status(presence.c.online)

_COLUMNS: Final = (
    _devices.c.device_id, _devices.c.clinic_id, effective_status, _devices.c.firmware_version,
    _devices.c.last_seen, _devices.c.summary, _registry.c.model, _registry.c.registered,
    presence.c.online, _registry.c.serial,
)  # fmt: skip


def _listed(registry: Any, online: Any) -> tuple[Any, ...]:
    """A list's columns, in the order ``_listed_items`` unpacks them, the registry's and
    presence's taken from ``registry`` and ``online`` (the tables, or the lookups of
    ``_looked_up``)."""
    return (
        _devices.c.device_id, _devices.c.clinic_id, _effective_status(online),
        _devices.c.firmware_version, _devices.c.last_seen, registry.c.model,
        registry.c.registered, online, registry.c.serial,
        # A list shows two facts of the summary: only the members they come from (and
        # the open session a clinic's scope is judged by) are read, not the whole
        # document of about 1.3 KB, and as JSON text that ``orjson`` decodes several
        # times faster than the driver's JSON loader.
        _devices.c.summary["cartridge"].as_string().label("cartridge"),
        _devices.c.summary["open_faults"].as_string().label("open_faults"),
        _devices.c.summary["open_session_id"].as_string().label("open_session_id"),
    )  # fmt: skip


_LISTED: Final = _listed(_registry, presence.c.online)
SERIALS_NAMED: Final = 1000
"""Devices a search names by the serials it matched, at most; beyond, it asks inside."""

# A page of 100 devices by clinic or after a deep cursor joined to the registry and
# presence by hash or merge joins walked both tables whole (10,000 rows each, 1.5 to
# 2.5 ms in PostgreSQL, BENCHMARKS.md, API): the planner prices an index probe as a
# read from disk.  As lateral lookups (``OFFSET 0`` keeps PostgreSQL from turning them
# back into joins) each listed device costs two index probes, 0.4 to 0.8 ms a page.
_REGISTRY_LOOKUP: Final = (
    select(_registry.c.model, _registry.c.registered, _registry.c.serial)
    .where(_registry.c.device_id == _devices.c.device_id)
    .offset(written(0))
    .lateral("registry_lookup")
)
_PRESENCE_LOOKUP: Final = (
    select(presence.c.online)
    .where(presence.c.device_id == _devices.c.device_id)
    .offset(written(0))
    .lateral("presence_lookup")
)
_LOOKED_UP: Final = _listed(_REGISTRY_LOOKUP, _PRESENCE_LOOKUP.c.online)


def _looked_up() -> Select[Any]:
    """The list's rows with the registry and presence looked up per device, on
    PostgreSQL (SQLite has no ``LATERAL``, and probes by index anyway)."""
    return (
        select(*_LOOKED_UP)
        .select_from(_devices)
        .outerjoin(_REGISTRY_LOOKUP, true())
        .outerjoin(_PRESENCE_LOOKUP, true())
    )


def _joined(*columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(_devices)
        .outerjoin(_registry, _registry.c.device_id == _devices.c.device_id)
        .outerjoin(presence, presence.c.device_id == _devices.c.device_id)
    )


# Built once: building the statement and its cache key each request cost more than
# PostgreSQL's part of answering it.
_ONE_DEVICE: Final = _joined(*_COLUMNS).where(_devices.c.device_id == bindparam("device_id"))
_ONE_DEVICE_OF_CLINIC: Final = _ONE_DEVICE.where(_devices.c.clinic_id == bindparam("clinic_id"))


def status_filter(status: str) -> ColumnElement[bool]:
    """Devices whose ``effective_status`` is ``status``."""
    if status == INTEGRITY:
        return _devices.c.status == INTEGRITY
    if status == OFFLINE:
        return and_(presence.c.online == false(), _devices.c.status != INTEGRITY)
    return and_(_devices.c.status == status, or_(presence.c.online.is_(None), presence.c.online))


def list_devices(  # noqa: PLR0913 - the list's filters, each a keyword
    connection: Connection,
    principal: Principal,
    *,
    clinic_id: str | None,
    status: str | None,
    firmware: str | None,
    after: str | None,
    limit: int,
    q: str | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` devices in serial order after ``after`` (one extra says
    whether there is a next page); ``q`` keeps those whose id (upper case, so the term
    is too) or enrolled serial (as given, or upper case) starts with it.

    Each device is ``DeviceOut``'s fields, in its order, holding what the model would
    (``DeviceOut(**item)`` is the device): a page of them is written as JSON without a
    model per device, which cost more than reading the rows."""
    # Filtered by status, a page walks devices until enough qualify: lookups per
    # device would cost more than the joins' two walks.
    looked_up = status is None and connection.dialect.name == "postgresql"
    query = _page_statement(
        principal.clinic_id is not None, clinic_id is not None, firmware is not None,
        after is not None, status=status, looked_up=looked_up, limit=limit,
    )  # fmt: skip
    if q:
        query = query.where(_searched(connection, q))
    given = {"scope": principal.clinic_id, "clinic_id": clinic_id, "firmware": firmware,
             "after": after}  # fmt: skip
    rows = connection.execute(query, {k: v for k, v in given.items() if v is not None}).all()
    return _listed_items(connection, principal, rows)


@lru_cache(maxsize=256)
def _page_statement(
    scoped_to_clinic: bool,
    by_clinic: bool,
    by_firmware: bool,
    after: bool,
    *,
    status: str | None,
    looked_up: bool,
    limit: int,
) -> Select[Any]:
    """A page's statement for the filters given, their values bound by name: built and
    keyed for SQLAlchemy's cache once, not on every request (0.2 ms a page)."""
    conditions: list[ColumnElement[bool]] = []
    if scoped_to_clinic:
        conditions.append(scoped_bound(_devices.c.clinic_id))
    if by_clinic:
        conditions.append(_devices.c.clinic_id == bindparam("clinic_id"))
    if status is not None:
        conditions.append(status_filter(status))
    if by_firmware:
        conditions.append(_devices.c.firmware_version == bindparam("firmware"))
    if after:
        conditions.append(_devices.c.device_id > bindparam("after"))
    listed = _looked_up() if looked_up else _joined(*_LISTED)
    return listed.where(*conditions).order_by(_devices.c.device_id).limit(written(limit + 1))


def _listed_items(
    connection: Connection, principal: Principal, rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """Rows of ``_listed``'s columns as ``DeviceOut``'s fields, each device's open
    faults counted of what the principal owns."""
    if principal.clinic_id is None:  # sees each summary whole
        counts = [0 if faults is None else len(orjson.loads(faults)) for *_, faults, _ in rows]
    else:
        # The members ``own_summary`` cuts: the open session a scope is judged by, and
        # the faults (the cartridge is the device's, whoever holds it).
        summaries = {
            device_id: {
                "open_faults": [] if faults is None else orjson.loads(faults),
                "open_session_id": open_session,
            }
            for device_id, *_, faults, open_session in rows
        }
        scopes = summary_scopes(connection, principal, summaries)
        counts = [
            len(_own(summary, device_id, scopes)["open_faults"])
            for device_id, summary in summaries.items()
        ]
    return [_listed_fields(row, count) for row, count in zip(rows, counts, strict=True)]


def _listed_fields(row: Sequence[Any], open_faults: int) -> dict[str, Any]:
    """``_device``'s fields, as the model holds them (a float a float), of a row of
    ``_listed``'s columns, unpacked: read by name, a row's dozen columns cost more than
    the rest of its device (3.5 µs)."""
    device_id, clinic_id, status, firmware, last_seen, model, registered, online, serial = row[:9]
    cartridge = row[9]
    life_used = None if cartridge is None else float(_life_used(orjson.loads(cartridge)))
    return {
        "device_id": device_id,
        "clinic_id": clinic_id,
        "model": model,
        "registered": bool(registered),
        "serial": serial,
        "status": status,
        "online": None if online is None else bool(online),
        "last_seen": aware(last_seen),
        "firmware_version": firmware,
        "cartridge_life_used_pct": life_used,
        "open_faults": open_faults,
    }


def _searched(connection: Connection, q: str) -> ColumnElement[bool]:
    """Devices whose id starts with ``q`` (upper case) or whose enrolled serial does
    (as given, or upper case).

    Asked in one statement, ``id or serial`` names two tables, which no index
    answers: PostgreSQL read every device and every registry row for it (11 ms of
    10,000 devices), or walked the devices from the first to the prefix's.  The
    serials are looked up first (one index range, nearly always empty), so the list
    is a walk of the device index from the prefix's start."""
    terms = dict.fromkeys((q, q.upper()))
    serials = or_(*(prefix_of(_registry.c.serial, term) for term in terms))
    found = select(_registry.c.device_id).where(serials)
    enrolled = connection.execute(found.limit(SERIALS_NAMED + 1)).scalars().all()
    by_id = prefix_of(_devices.c.device_id, q.upper())
    if not enrolled:
        return by_id
    if len(enrolled) > SERIALS_NAMED:
        # A short term may match most of a fleet's serials: named one by one they
        # would pass the driver's bound on parameters, so they are asked for inside.
        return or_(by_id, _devices.c.device_id.in_(found))
    return or_(by_id, _devices.c.device_id.in_(enrolled))


def find_device(
    connection: Connection, principal: Principal, device_id: str
) -> DeviceDetail | None:
    """The device, or ``None`` when it does not exist or is outside the scope.

    A clinic sees the devices it holds now, and on them only what it owns: a device
    it held before is ``None`` (its sessions and alerts from then stay visible as
    sessions and alerts), and the page of one it holds now leaves out an open
    session and faults of the clinic before it."""
    if principal.clinic_id is None:
        found = connection.execute(_ONE_DEVICE, {"device_id": device_id})
    else:
        wanted = {"device_id": device_id, "clinic_id": principal.clinic_id}
        found = connection.execute(_ONE_DEVICE_OF_CLINIC, wanted)
    row = found.first()
    return None if row is None else device_detail(connection, principal, row)


def device_detail(connection: Connection, principal: Principal, row: Any) -> DeviceDetail:
    """The detail of a device row ``find_device``'s statements read for ``principal``."""
    scopes = summary_scopes(connection, principal, {row.device_id: row.summary})
    return _detail(row, _summary(row, scopes))


_TOKEN: Final = TOKEN_LOOKUP.subquery("token")
_DEVICE_OF_TOKEN: Final = _ONE_DEVICE.where(
    or_(_TOKEN.c.clinic_id.is_(None), _devices.c.clinic_id == _TOKEN.c.clinic_id)
).lateral("device")
_ONE_DEVICE_BY_TOKEN: Final = select(*_DEVICE_OF_TOKEN.c, *_TOKEN.c).select_from(
    _TOKEN.outerjoin(_DEVICE_OF_TOKEN, true())
)
_TOKEN_COLUMNS: Final = len(_TOKEN.c)


def find_device_by_token(
    connection: Connection, token_digest: str, device_id: str
) -> tuple[Sequence[Any] | None, Any]:
    """The row of the token (``TOKEN_LOOKUP``'s columns, ``None`` when there is none)
    and the row ``find_device`` reads for its principal (``None`` when there is none),
    in one statement on PostgreSQL: the token's lookup was a round trip of its own
    before every device detail.  The device is read whatever the token turns out to
    be (revoked, expired, a role that may not read devices); the caller refuses
    before anything of it is used."""
    if connection.dialect.name != "postgresql":  # SQLite: no LATERAL, no round trip
        token = connection.execute(TOKEN_LOOKUP, {"digest": token_digest}).first()
        if token is None:
            return None, None
        if token.clinic_id is None:
            found = connection.execute(_ONE_DEVICE, {"device_id": device_id})
        else:
            wanted = {"device_id": device_id, "clinic_id": token.clinic_id}
            found = connection.execute(_ONE_DEVICE_OF_CLINIC, wanted)
        return token, found.first()
    row = connection.execute(
        _ONE_DEVICE_BY_TOKEN, {"digest": token_digest, "device_id": device_id}
    ).first()
    if row is None:
        return None, None
    return row[-_TOKEN_COLUMNS:], None if row.device_id is None else row


def heard_at(
    connection: Connection, principal: Principal, device_id: str
) -> tuple[datetime | None, datetime | None]:
    """When the device last spoke: by its own clock and by the platform's (receive)
    time, which differ by the link's delay, or by a wrong device clock."""
    row = connection.execute(
        select(
            _devices.c.summary["last_occurred_at"].as_string(),
            _devices.c.summary["last_received_at"].as_string(),
        ).where(_devices.c.device_id == device_id, scoped(principal, _devices.c.clinic_id))
    ).first()
    if row is None:
        return None, None
    occurred, received = (None if text is None else datetime.fromisoformat(text) for text in row)
    return occurred, received


def device_visible(connection: Connection, principal: Principal, device_id: str) -> bool:
    """Whether the platform knows the device (it sent events or was registered) and it
    lies in the principal's scope: the check every route about one device starts with."""
    clinic = select(_devices.c.clinic_id).where(_devices.c.device_id == device_id)
    row = connection.execute(clinic).first()
    if row is None:
        registered = select(_registry.c.clinic_id).where(_registry.c.device_id == device_id)
        row = connection.execute(registered).first()
    return row is not None and principal.sees(row[0])


def daily_usage(
    connection: Connection,
    principal: Principal,
    device_id: str,
    days: int = 30,
    now: datetime | None = None,
) -> list[UsageDay]:
    """Sessions and cores per UTC day over the last ``days`` days, oldest first: those
    of the principal's clinic (a device moved between clinics has two histories)."""
    today = (now or datetime.now(UTC)).date()
    since = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)
    rows = connection.execute(
        select(_sessions.c.started_at, _sessions.c.cores_counted).where(
            _sessions.c.device_id == device_id,
            _sessions.c.started_at >= utc(since),
            scoped(principal, _sessions.c.clinic_id),
        )
    )
    sessions: defaultdict[str, int] = defaultdict(int)
    cores: defaultdict[str, int] = defaultdict(int)
    for started_at, counted in rows:
        day = aware(started_at).date().isoformat()  # type: ignore[union-attr]
        sessions[day] += 1
        cores[day] += counted
    return [
        UsageDay(day=day, sessions=sessions[day], cores=cores[day])
        for day in ((today - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1))
    ]


def _summary(row: Any, scopes: dict[str, EventScope] | None) -> dict[str, Any]:
    return _own(row.summary, row.device_id, scopes)


def _own(
    summary: dict[str, Any], device_id: str, scopes: dict[str, EventScope] | None
) -> dict[str, Any]:
    return summary if scopes is None else scopes[device_id].own_summary(summary)


def _device(row: Any, summary: dict[str, Any]) -> DeviceOut:
    cartridge = summary.get("cartridge")
    return DeviceOut(
        device_id=row.device_id,
        clinic_id=row.clinic_id,
        model=row.model,
        registered=bool(row.registered),
        serial=row.serial,
        status=row.effective_status,
        online=row.online,
        last_seen=aware(row.last_seen),
        firmware_version=row.firmware_version,
        cartridge_life_used_pct=None if cartridge is None else _life_used(cartridge),
        open_faults=len(summary.get("open_faults", ())),
    )


def _detail(row: Any, summary: dict[str, Any]) -> DeviceDetail:
    cartridge, forecast = summary.get("cartridge"), summary.get("forecast")
    interlocks = summary.get("interlocks")
    attention = [status for status in summary.get("attention", ()) if status != OFFLINE]
    if row.online is False:
        attention.insert(1 if attention[:1] == [INTEGRITY] else 0, OFFLINE)
    return DeviceDetail(
        **_device(row, summary).model_dump(),
        agent_version=summary.get("agent_version"),
        attention=attention,
        chain_status=summary["chain_status"],
        cartridge=None if cartridge is None else _cartridge(cartridge),
        forecast=None if forecast is None else ForecastOut(**forecast),
        lifetime_actuations=summary["lifetime_actuations"],
        lifetime_cores=summary["lifetime_cores"],
        lifetime_sessions=summary["lifetime_sessions"],
        actuations_since_service=summary["actuations_since_service"],
        last_serviced_at=summary.get("last_serviced_at"),
        faults=[
            FaultOut(
                fault_code=fault["fault_code"],
                severity=fault["severity"],
                message=fault["message"],
                raised_at=fault["raised_at"],
            )
            for fault in summary.get("open_faults", ())
        ],
        open_session_id=summary.get("open_session_id"),
        # Rows folded before these existed lack them until ``coreline replay``.
        integrity_alerts=list(summary.get("integrity_alerts", ())),
        clock_skew_events=summary.get("clock_skew_events", 0),
        last_clock_skew_seq=summary.get("last_clock_skew_seq"),
        actuations_at_service=summary.get("actuations_at_service", 0),
        interlocks=None if interlocks is None else InterlocksOut.model_validate(interlocks),
    )


def _life_used(cartridge: dict[str, Any]) -> float:
    return life_used_pct(
        cartridge["actuations"], cartridge["rated_actuations"], cartridge.get("wear_pct")
    )


def _cartridge(cartridge: dict[str, Any]) -> CartridgeOut:
    fields = {name: cartridge[name] for name in CartridgeOut.model_fields if name in cartridge}
    return CartridgeOut(**{**fields, "life_used_pct": _life_used(cartridge)})


def _fault(fault: dict[str, Any]) -> FaultOut:
    return FaultOut(
        fault_code=fault["fault_code"],
        severity=fault["severity"],
        message=fault["message"],
        raised_at=fault["raised_at"],
    )


def is_registered(connection: Connection, device_id: str) -> bool:
    row = connection.execute(
        select(_registry.c.registered).where(_registry.c.device_id == device_id)
    ).first()
    return bool(row is not None and row[0])
