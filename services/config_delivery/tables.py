"""The tables of configuration delivery and command tracking (migration 0010, SQLite
schema version 10).  Written only by the delivery loop, with its checkpoint in the
same transaction; read by the API.

Times are RFC 3339 UTC text (``utc_text``), as the events carry them: they sort as
text, and read back the same from either database."""

from typing import Final

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, Table, Text
from sqlalchemy.types import BigInteger

metadata: Final = MetaData()
_BIG: Final = BigInteger().with_variant(Integer(), "sqlite")

config_layers: Final = Table(
    "config_layers",
    metadata,
    # fleet, model, clinic, device; or bounds (the clinic bounds, subject "").
    Column("layer", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    # The layer's JSON (only the fields it sets), or the bounds' JSON.
    Column("settings", Text, nullable=False),
    Column("changed_at", Text, nullable=False),
    Column("changed_by", Text, nullable=False),
)

device_config: Final = Table(
    "device_config",
    metadata,
    Column("device_id", Text, primary_key=True),
    Column("model", Text),
    Column("clinic_id", Text),
    Column("registered", Boolean, nullable=False),
    Column("decommissioned", Boolean, nullable=False),
    Column("last_service_actuations", _BIG),
    Column("desired_version", Integer, nullable=False),
    Column("desired_digest", Text),
    Column("desired_settings", Text),
    Column("desired_at", Text),
    Column("reported_version", Integer, nullable=False),
    Column("reported_digest", Text),
    Column("applied_at", Text),
    Column("refused_version", Integer, nullable=False),
    Column("refused_reason", Text),
    Column("refused_at", Text),
    # applied, pending, refused (null: nothing desired yet), for the convergence
    # count and the dashboard's filter.
    Column("state", Text),
)
Index("device_config_state", device_config.c.state)
Index("device_config_clinic", device_config.c.clinic_id)

device_commands: Final = Table(
    "device_commands",
    metadata,
    Column("command_id", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("cmd", Text, nullable=False),
    Column("args", Text, nullable=False),
    Column("issued_by", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("answered_at", Text),
    Column("expired_at", Text),
    Column("reason", Text),
    Column("detail", Text),
    Column("result", Text, nullable=False),
)
Index("device_commands_device", device_commands.c.device_id, device_commands.c.issued_at)
Index("device_commands_state", device_commands.c.state)

TABLES: Final = (config_layers, device_config, device_commands)
