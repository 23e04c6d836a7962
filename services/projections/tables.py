"""The read-model tables (DESIGN §6), one definition for SQLite and PostgreSQL.

Read models are derived data: the projector creates these tables when they are
missing, and ``coreline replay`` rebuilds them from the event store into a fresh
set (``suffix="_next"``) that replaces the live one in a single transaction.
"""

from typing import Final, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

_DOCUMENT: Final = JSON().with_variant(JSONB(), "postgresql")
_MOMENT: Final = DateTime(timezone=True)


class ReadTables(NamedTuple):
    metadata: MetaData
    devices: Table
    sessions: Table
    cartridge_weeks: Table
    registry: Table
    alerts: Table
    custody: Table


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
        Index(f"read_sessions{suffix}_device_started", "device_id", "started_at"),
        Index(f"read_sessions{suffix}_clinic_started", "clinic_id", "started_at"),
        # The API's unfiltered session list and CSV export walk (started_at, session_id),
        # its keyset cursor: without this a page sorts the whole table (bench.api).
        Index(f"read_sessions{suffix}_started", "started_at", "session_id"),
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
        Column("acknowledged_at", _MOMENT),
        Column("acknowledged_by", Text),
        Column("resolved_at", _MOMENT),
        Column("resolved_by", Text),
        Column("note", Text),
        Column("last_seq", Integer, nullable=False),
        Index(f"read_alerts{suffix}_clinic_status", "clinic_id", "status"),
        Index(f"read_alerts{suffix}_device", "device_id", "rule", "subject"),
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
    return ReadTables(metadata, devices, sessions, cartridge_weeks, registry, alerts, custody)
