"""The CRL the broker reads (``crlfile`` on its device listener): every certificate
that is revoked and not yet expired, from the registry streams, signed by the fleet
CA, written whole (a reader never sees half a file), and the broker told to read it
again.

Mosquitto reads its CRL when its listener starts and on SIGHUP, and checks it at
every TLS handshake: a revoked certificate's next connection is refused, while a
connection already open stays up until it ends (``docs/device-identity.md`` says how
a deployment closes it).  Only devices that hold an unexpired certificate are read
(``device_certificates``), one small registry stream each."""

import logging
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from fleet_ca import FleetCa, Revocation
from services.api.identity.records import load_identity
from services.api.identity.register import devices_with_live_certificates
from services.api.identity.settings import IdentityConfig
from services.eventstore.keyrings import StreamRead

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishedCrl:
    path: Path
    revoked: int
    broker_signalled: bool


def revocations(store: StreamRead, engine: Engine, now: datetime) -> list[Revocation]:
    return [
        Revocation(certificate.serial, certificate.revoked_at)
        for device_id in devices_with_live_certificates(engine, now)
        for certificate in load_identity(store, device_id).certificates
        if certificate.revoked_at is not None and certificate.not_after > now
    ]


def publish_crl(
    store: StreamRead, engine: Engine, config: IdentityConfig, *, now: datetime | None = None
) -> PublishedCrl:
    """Write the CRL (``FleetCaError`` when there is no fleet CA) and signal the
    broker named by ``CORELINE_FLEET_CA_BROKER_PID_FILE``, if any."""
    moment = now or datetime.now(UTC)
    ca = FleetCa.load(config.fleet_ca_dir)
    revoked = revocations(store, engine, moment)
    pem = ca.revocation_list(revoked, valid_for=config.crl_validity, now=moment)
    path = config.crl_path
    write_public(path, pem)
    signalled = signal_broker(config.broker_pid_file) if config.broker_pid_file else False
    log.info("CRL of %d certificates written to %s", len(revoked), path)
    return PublishedCrl(path, len(revoked), signalled)


def write_public(path: Path, content: bytes) -> None:
    """Replace ``path`` whole with ``content``, readable by all (the broker runs as a
    user of its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    partial.chmod(0o644)
    partial.replace(path)


def signal_broker(pid_file: Path) -> bool:
    """SIGHUP to the process whose pid ``pid_file`` holds: Mosquitto then reads its
    configuration, and its CRL, again.  Whether it was sent."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as error:
        log.warning("could not signal the broker (pid file %s): %s", pid_file, error)
        return False
    return True
