"""The alert engine's own tables: the book of holding conditions, and clinic
policies.  Not read models: a replay rebuilds ``read_alerts`` from alert events but
keeps the book, so the live engine carries on without raising anything twice.  Both
are made by ``coreline db upgrade``, like every table no replay rebuilds
(``tests/integration/test_migrations.py`` holds the migrations to these definitions)."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    select,
)

from services.alerts.engine import AlertDecisions, Key
from services.alerts.policy import DEFAULT_ALERT_POLICY, AlertPolicy

metadata = MetaData()
alert_conditions = Table(
    "alert_conditions",
    metadata,
    Column("device_id", Text, primary_key=True),
    Column("rule", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("alert_id", Text, nullable=False),
)
alert_policies = Table(
    "alert_policies",
    metadata,
    Column("clinic_id", Text, primary_key=True),
    Column("overrides", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def load_book(connection: Connection, device_ids: Iterable[str]) -> dict[str, dict[Key, str]]:
    book: dict[str, dict[Key, str]] = {device_id: {} for device_id in device_ids}
    rows = connection.execute(
        select(alert_conditions).where(alert_conditions.c.device_id.in_(list(book)))
    )
    for row in rows:
        book[row.device_id][(row.rule, row.subject)] = row.alert_id
    return book


def save_decisions(connection: Connection, decisions: AlertDecisions) -> None:
    # Every condition that ended or (re)started is deleted, then the started ones
    # inserted: one executemany each, as the per-condition statements were a tenth
    # of the live projector's time under load.
    keys = [*decisions.removed, *decisions.added]
    if keys:
        connection.execute(
            delete(alert_conditions).where(
                and_(
                    alert_conditions.c.device_id == bindparam("key_device"),
                    alert_conditions.c.rule == bindparam("key_rule"),
                    alert_conditions.c.subject == bindparam("key_subject"),
                )
            ),
            [
                {"key_device": device_id, "key_rule": rule, "key_subject": subject}
                for device_id, rule, subject in keys
            ],
        )
    if decisions.added:
        connection.execute(
            alert_conditions.insert(),
            [
                {"device_id": device_id, "rule": rule, "subject": subject, "alert_id": alert_id}
                for (device_id, rule, subject), alert_id in decisions.added.items()
            ],
        )


def load_policies(connection: Connection) -> dict[str, AlertPolicy]:
    rows = connection.execute(select(alert_policies.c.clinic_id, alert_policies.c.overrides))
    return {clinic: AlertPolicy.with_overrides(overrides) for clinic, overrides in rows}


PoliciesVersion = tuple[tuple[str, datetime], ...]


def policies_version(connection: Connection) -> PoliciesVersion:
    """Each clinic's policy with the time it was set: what changes whenever a policy
    is set (``set_policy`` writes the row anew), so policies validated while it stays
    the same are the table's still.  Every row, not the newest time alone: API hosts'
    clocks may disagree, and a policy set by a host behind would not move a maximum."""
    rows = connection.execute(
        select(alert_policies.c.clinic_id, alert_policies.c.updated_at).order_by(
            alert_policies.c.clinic_id
        )
    )
    return tuple((clinic, updated_at) for clinic, updated_at in rows)


def set_policy(engine: Engine, clinic_id: str, overrides: dict[str, Any]) -> AlertPolicy:
    """Store a clinic's overrides (validated first: a bad one is refused, not stored)."""
    policy = AlertPolicy.with_overrides(overrides)
    with engine.begin() as connection:
        connection.execute(delete(alert_policies).where(alert_policies.c.clinic_id == clinic_id))
        connection.execute(
            alert_policies.insert().values(
                clinic_id=clinic_id, overrides=overrides, updated_at=datetime.now(UTC)
            )
        )
    return policy


def policy_overrides(engine: Engine, clinic_id: str) -> dict[str, Any]:
    """What ``clinic_id`` has set (empty: the defaults hold)."""
    with engine.connect() as connection:
        found = connection.execute(
            select(alert_policies.c.overrides).where(alert_policies.c.clinic_id == clinic_id)
        ).scalar_one_or_none()
    return dict(found or {})


class PolicyLookup:
    def __init__(self, policies: dict[str, AlertPolicy]) -> None:
        self._policies = policies

    def __call__(self, clinic_id: str | None) -> AlertPolicy:
        if clinic_id is None:
            return DEFAULT_ALERT_POLICY
        return self._policies.get(clinic_id, DEFAULT_ALERT_POLICY)
