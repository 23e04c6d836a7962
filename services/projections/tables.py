"""The read-model tables (DESIGN §6), one definition for SQLite and PostgreSQL.

Read models are derived data: the projector creates these tables when they are
missing, and ``coreline replay`` rebuilds them from the event store into a fresh
set (``suffix="_next"``) that replaces the live one in a single transaction.
"""

from typing import Any, Final, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement

_DOCUMENT: Final = JSON().with_variant(JSONB(), "postgresql")
_MOMENT: Final = DateTime(timezone=True)
_AUDIT_SEQ: Final = "CAST(audit ->> '{}' AS BIGINT)"
"""A seq member of a session's audit document (``->>`` reads JSON in PostgreSQL and
SQLite alike)."""
_FLAGGED: Final = "reconciled = false OR chain_status = 'broken'"


class _ByDialect(ColumnElement[str]):
    """A generated column's expression, written for each database: the CSV export's
    cell formats are not spelled the same in PostgreSQL and SQLite."""

    inherit_cache = False

    def __init__(self, postgresql: str, sqlite: str) -> None:
        self.postgresql = postgresql
        self.sqlite = sqlite


@compiles(_ByDialect)
def _sqlite_expression(element: _ByDialect, compiler: SQLCompiler, **kw: Any) -> str:
    return _as_sent(compiler, element.sqlite)


@compiles(_ByDialect, "postgresql")
def _postgresql_expression(element: _ByDialect, compiler: SQLCompiler, **kw: Any) -> str:
    return _as_sent(compiler, element.postgresql)


def _as_sent(compiler: SQLCompiler, expression: str) -> str:
    """``%`` doubled where the driver reads it as a parameter's mark (psycopg)."""
    sent: str = compiler.post_process_text(expression)  # type: ignore[no-untyped-call]
    return sent


def _moment_cell(column: str) -> _ByDialect:
    """Python's ``isoformat`` of the UTC time with ``Z``: microseconds only when there
    are some.  In PostgreSQL from its parts, since ``to_char`` and the text cast depend
    on settings and a generated column may only use immutable functions; SQLite keeps
    the time as SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff`` text in UTC."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    micros = f"date_part('microseconds', {utc})::bigint"
    two = "lpad(date_part('{0}', " + utc + ")::int::text, 2, '0')"
    postgresql = (
        f"lpad(date_part('year', {utc})::int::text, 4, '0') || '-' || {two.format('month')}"
        f" || '-' || {two.format('day')} || 'T' || {two.format('hour')} || ':' || "
        f"{two.format('minute')} || ':' || lpad(({micros} / 1000000)::text, 2, '0') || "
        f"CASE WHEN {micros} % 1000000 = 0 THEN 'Z' "
        f"ELSE '.' || lpad(({micros} % 1000000)::text, 6, '0') || 'Z' END"
    )
    sqlite = f"replace(replace({column}, ' ', 'T') || 'Z', '.000000Z', 'Z')"
    return _ByDialect(postgresql, sqlite)


def _float_cell(column: str) -> _ByDialect:
    """Python's ``repr``: the shortest digits that read back as the same float, with
    ``.0`` on an integral value.  PostgreSQL prints the shortest digits already (its
    default ``extra_float_digits``); SQLite is asked for 15, 16, then 17."""
    as_text = f"{column}::text"
    postgresql = f"CASE WHEN {as_text} ~ '[.eEn]' THEN {as_text} ELSE {as_text} || '.0' END"
    digits = [f"printf('%.{n}g', {column})" for n in (15, 16)]
    shortest = (
        f"CASE WHEN CAST({digits[0]} AS REAL) = {column} THEN {digits[0]} "
        f"WHEN CAST({digits[1]} AS REAL) = {column} THEN {digits[1]} "
        f"ELSE printf('%!.17g', {column}) END"
    )
    sqlite = (
        f"CASE WHEN instr({shortest}, '.') + instr({shortest}, 'e') + instr({shortest}, 'I') + "
        f"instr({shortest}, 'N') > 0 THEN {shortest} ELSE {shortest} || '.0' END"
    )
    return _ByDialect(postgresql, sqlite)


COVERAGE_DECIMALS: Final = 2
"""Places ``coverage_pct`` is rounded to in the export."""
_COVERAGE_CELL: Final = _ByDialect(
    f"round(coverage_pct::numeric, {COVERAGE_DECIMALS})::text",
    f"printf('%.{COVERAGE_DECIMALS}f', coverage_pct)",
)


class ReadTables(NamedTuple):
    metadata: MetaData
    devices: Table
    sessions: Table
    cartridge_weeks: Table
    registry: Table
    alerts: Table
    custody: Table
    alert_history: Table


def read_tables(suffix: str = "") -> ReadTables:
    """The read-model tables, named ``read_*{suffix}``."""
    metadata = MetaData()
    devices = Table(
        f"read_devices{suffix}",
        metadata,
        Column("device_id", Text, primary_key=True),
        Column("clinic_id", Text),
        Column("status", Text, nullable=False),
        Column("firmware_version", Text),
        Column("last_seen", _MOMENT),
        Column("summary", _DOCUMENT, nullable=False),
        # The fold's own state, so a restart resumes instead of refolding the stream.
        # A cache of derived data: ``coreline replay`` rebuilds it after an upgrade.
        Column("snapshot", LargeBinary, nullable=False),
        # What the alert engine's clock looks at: devices in session or waiting on a gap.
        Column("open_session_id", Text),
        Column("waiting_for_seq", BigInteger),
        Column("updated_at", _MOMENT, nullable=False),
        Index(f"read_devices{suffix}_clinic_status", "clinic_id", "status"),
    )
    sessions = Table(
        f"read_sessions{suffix}",
        metadata,
        Column("session_id", Text, primary_key=True),
        Column("device_id", Text, nullable=False),
        Column("clinic_id", Text),
        Column("treatment_area", Text, nullable=False),
        Column("area_cm2", Float, nullable=False),
        Column("started_at", _MOMENT, nullable=False),
        Column("ended_at", _MOMENT),
        Column("cores_counted", BigInteger, nullable=False),
        Column("cores_reported", BigInteger),
        Column("reconciled", Boolean),
        Column("coverage_pct", Float, nullable=False),
        Column("chain_status", Text, nullable=False),
        Column("audit", _DOCUMENT, nullable=False),
        # The cartridge installed when the session started and its lot: what a recall
        # of a lot searches by (``q``, a prefix of either, on the indexes below).
        Column("cartridge_id", Text),
        Column("lot", Text),
        # What the CSV export prints beside the session, kept with it so that an export
        # is a plain read of columns (no probes of the event store, no read of the audit
        # document per row): the seqs of its ends as the audit document has them (the
        # database derives them, so they cannot disagree), the stored hash of its end,
        # and its cartridges and their core diameters as the export's cells.
        Column(
            "started_seq", BigInteger, Computed(_AUDIT_SEQ.format("started_seq"), persisted=True)
        ),
        Column("ended_seq", BigInteger, Computed(_AUDIT_SEQ.format("ended_seq"), persisted=True)),
        Column("ended_hash", Text),
        Column("cartridge_ids", Text),
        Column("core_diameters_mm", Text),
        # The export's cells that are pure functions of the columns above, as it prints
        # them, generated by the database so that they cannot disagree with them:
        # formatting them per row was most of what the export cost PostgreSQL
        # (BENCHMARKS.md, API).
        Column("area_cm2_cell", Text, Computed(_float_cell("area_cm2"), persisted=True)),
        Column("started_at_cell", Text, Computed(_moment_cell("started_at"), persisted=True)),
        Column("ended_at_cell", Text, Computed(_moment_cell("ended_at"), persisted=True)),
        Column("coverage_pct_cell", Text, Computed(_COVERAGE_CELL, persisted=True)),
        Index(f"read_sessions{suffix}_device_started", "device_id", "started_at"),
        Index(f"read_sessions{suffix}_cartridge", "cartridge_id"),
        Index(f"read_sessions{suffix}_lot", "lot"),
        Index(f"read_sessions{suffix}_clinic_started", "clinic_id", "started_at"),
        # The API's unfiltered session list and CSV export walk (started_at, session_id),
        # its keyset cursor: without this a page sorts the whole table (bench.api).
        Index(f"read_sessions{suffix}_started", "started_at", "session_id"),
        # The few sessions that did not reconcile or whose chain broke, newest first
        # (the dashboard's "unreconciled / broken only"): a walk of the index above
        # would pass over hundreds of good sessions for each of them.
        Index(
            f"read_sessions{suffix}_flagged",
            "started_at",
            "session_id",
            postgresql_where=text(_FLAGGED),
            sqlite_where=text(_FLAGGED),
        ),
    )
    cartridge_weeks = Table(
        f"read_cartridge_weeks{suffix}",
        metadata,
        Column("clinic_id", Text, primary_key=True),  # "" for devices of no clinic yet
        Column("week", Text, primary_key=True),
        Column("installed", Integer, nullable=False),
    )
    registry = Table(
        f"read_registry{suffix}",
        metadata,
        Column("device_id", Text, primary_key=True),
        Column("clinic_id", Text),
        Column("model", Text),
        Column("registered", Boolean, nullable=False),
        # The serial it enrolled with (``device.enrolled``): what is printed on it.
        Column("serial", Text),
        Index(f"read_registry{suffix}_serial", "serial"),
    )
    alerts = Table(
        f"read_alerts{suffix}",
        metadata,
        Column("alert_id", Text, primary_key=True),
        Column("device_id", Text, nullable=False),
        Column("clinic_id", Text),
        Column("rule", Text, nullable=False),
        Column("subject", Text, nullable=False),
        Column("severity", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("context", _DOCUMENT, nullable=False),
        Column("raised_at", _MOMENT, nullable=False),
        # The platform's receive time is the one clock alerts show; the device's
        # time of the condition's start, where it differs, is kept beside it.
        Column("device_time", _MOMENT),
        Column("escalated_at", _MOMENT),
        Column("acknowledged_at", _MOMENT),
        Column("acknowledged_by", Text),
        Column("resolved_at", _MOMENT),
        Column("resolved_by", Text),
        Column("note", Text),
        Column("last_seq", Integer, nullable=False),
        Index(f"read_alerts{suffix}_clinic_status", "clinic_id", "status"),
        Index(f"read_alerts{suffix}_device", "device_id", "rule", "subject"),
        # The dashboard's search names a cartridge, fault code or session as the subject.
        Index(f"read_alerts{suffix}_subject", "subject"),
    )
    custody = Table(
        f"read_custody{suffix}",
        metadata,
        # One row per interval (``services.projections.custody``), keyed by the
        # assignment that opened it.
        Column("device_id", Text, primary_key=True),
        Column("assigned_seq", BigInteger, primary_key=True),
        Column("clinic_id", Text),
        Column("from_seq", BigInteger, nullable=False),
        Column("to_seq", BigInteger),
        Column("assigned_at", _MOMENT, nullable=False),
        Column("released_at", _MOMENT),
        Index(f"read_custody{suffix}_clinic", "clinic_id", "device_id"),
    )
    alert_history = Table(
        f"read_alert_history{suffix}",
        metadata,
        # One row per alert event that changed what an alert says or its state: the
        # rungs of a needle-life alert (``alert_id`` the alert they belong to, also
        # for the parallel alerts of one cartridge raised before the ladder, which a
        # replay merges into it: ``from_alert_id``).
        Column("event_id", Text, primary_key=True),
        Column("alert_id", Text, nullable=False),
        Column("from_alert_id", Text, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("kind", Text, nullable=False),
        Column("rule", Text),
        Column("severity", Text),
        Column("at", _MOMENT, nullable=False),
        Column("device_time", _MOMENT),
        Column("by", Text),
        Column("note", Text),
        Index(f"read_alert_history{suffix}_alert", "alert_id", "at"),
    )
    return ReadTables(
        metadata, devices, sessions, cartridge_weeks, registry, alerts, custody, alert_history
    )
