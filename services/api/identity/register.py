"""The fleet CA's log of every certificate it signed (``device_certificates``, made by
``coreline db upgrade``): append-only, written before the event that hands a
certificate to a device is recorded, so nothing the CA signed is ever unaccounted
for.  Which certificates a device holds, and which are revoked, the events say."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Column, DateTime, Engine, Index, MetaData, Row, Table, Text, select
from sqlalchemy.exc import IntegrityError

from fleet_ca import IssuedCertificate

device_certificates: Final = Table(
    "device_certificates",
    MetaData(),
    Column("fingerprint", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("serial", Text, nullable=False, unique=True),
    Column("key_digest", Text, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("certificate", Text, nullable=False),
    Index("device_certificates_device", "device_id", "issued_at"),
    Index("device_certificates_expiry", "not_after"),
)


@dataclass(frozen=True, slots=True)
class LoggedCertificate:
    fingerprint: str
    device_id: str
    serial: str
    key_digest: str
    not_after: datetime
    pem: bytes


def log_issued(engine: Engine, device_id: str, issued: IssuedCertificate, at: datetime) -> None:
    facts = issued.facts
    row = {
        "fingerprint": facts.fingerprint, "device_id": device_id, "serial": facts.serial,
        "key_digest": facts.public_key_digest, "not_before": facts.not_before,
        "not_after": facts.not_after, "issued_at": at, "certificate": issued.pem.decode(),
    }  # fmt: skip
    try:
        with engine.begin() as connection:
            connection.execute(device_certificates.insert().values(**row))
    except IntegrityError:
        # A random 159-bit serial repeats never in practice; a retried log of the very
        # same certificate is what this can be, and it is logged already.
        if logged(engine, facts.fingerprint) is None:
            raise


def logged(engine: Engine, fingerprint: str) -> LoggedCertificate | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(device_certificates).where(device_certificates.c.fingerprint == fingerprint)
        ).first()
    return None if row is None else _logged(row)


def devices_with_live_certificates(engine: Engine, now: datetime) -> list[str]:
    """Devices holding a certificate not yet expired: the only ones a CRL need name."""
    table = device_certificates
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.device_id).where(table.c.not_after > now).distinct()
        )
        return sorted(row[0] for row in rows)


def certificates_of(engine: Engine, device_ids: Sequence[str]) -> dict[str, LoggedCertificate]:
    """Every logged certificate of these devices, by fingerprint."""
    table = device_certificates
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.device_id.in_(list(device_ids))))
        return {row.fingerprint: _logged(row) for row in rows}


def _logged(row: Row[Any]) -> LoggedCertificate:
    not_after: datetime = row.not_after
    if not_after.tzinfo is None:  # SQLite keeps the UTC time without its zone
        not_after = not_after.replace(tzinfo=UTC)
    return LoggedCertificate(
        row.fingerprint, row.device_id, row.serial, row.key_digest, not_after,
        str(row.certificate).encode(),
    )  # fmt: skip
