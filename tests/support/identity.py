"""Device identity in tests: a platform with its own fleet CA in a temporary directory,
the API over it, and what a handpiece sends (its TLS key and request, its seal key,
its signed requests)."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fleet_ca import certificate_request, ensure_fleet_ca, new_key_pem, request_digest
from schemas import utc_text
from schemas.device_identity import renewal_message, rotation_message
from schemas.seals import b64url
from seal_keys import SealKey
from services.api import Role, commands, create_app, create_token
from services.api.identity import IdentityConfig
from services.eventstore import EventStore, StoredEvent, open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from services.settings import LogKeyPlace, log_key_path
from tests.support.api_client import MASTER_KEY, bearer
from tests.support.api_world import project
from tests.support.postgres import free_port
from transport import BrokerAddress


@dataclass
class Handpiece:
    """What a handpiece holds: its id and serial, a TLS key, a seal key."""

    device_id: str
    serial: str
    tls_key: bytes = field(default_factory=new_key_pem)
    seal: SealKey = field(default_factory=SealKey.generate)

    def csr(self) -> str:
        return certificate_request(self.tls_key, self.device_id)

    def enrolment(self, claim_secret: str | None, **changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "device_id": self.device_id, "serial": self.serial, "csr": self.csr(),
            "seal_public_key": self.seal.public_text, "claim_secret": claim_secret,
        }  # fmt: skip
        return {key: value for key, value in (body | changes).items() if value is not None}

    def renewal(self, csr: str, signed_at: datetime | None = None) -> dict[str, Any]:
        at = utc_text(signed_at or datetime.now(UTC))
        signature = self.seal.private.sign(renewal_message(self.device_id, request_digest(csr), at))
        return {"csr": csr, "key_id": self.seal.key_id, "signed_at": at,
                "signature": b64url(signature)}  # fmt: skip

    def rotation(self, new: SealKey) -> dict[str, Any]:
        at = utc_text(datetime.now(UTC))
        message = rotation_message(self.device_id, new.public_text, at)
        return {"new_public_key": new.public_text, "key_id": self.seal.key_id, "signed_at": at,
                "signature": b64url(self.seal.private.sign(message)),
                "new_key_signature": b64url(new.private.sign(message))}  # fmt: skip


@dataclass
class Platform:
    database_url: str
    config: IdentityConfig
    client: TestClient
    manufacturer: dict[str, str]
    clinic: dict[str, str]
    store: EventStore
    engine: Engine

    def register(self, device_id: str, model: str = "CX-2") -> None:
        commands.register_device(self.store, device_id, model, "fleet-ops")
        project(self.database_url)

    def claim(self, device_id: str, serial: str, **body: Any) -> str:
        answer = self.client.post(
            f"/api/v1/devices/{device_id}/claims",
            json={"serial": serial, **body},
            headers=self.manufacturer,
        )
        assert answer.status_code == 201, answer.text
        secret: str = answer.json()["claim_secret"]
        return secret

    def registry(self, device_id: str) -> list[StoredEvent]:
        return self.store.read_stream(f"registry:{device_id}")

    def enrolled(self, handpiece: Handpiece) -> dict[str, Any]:
        """Register, claim and enrol ``handpiece``: the enrolment's answer."""
        self.register(handpiece.device_id)
        secret = self.claim(handpiece.device_id, handpiece.serial)
        answer = self.client.post("/api/v1/enrolment", json=handpiece.enrolment(secret))
        assert answer.status_code == 201, answer.text
        found: dict[str, Any] = answer.json()
        return found


def identity_config(directory: Path, **changes: Any) -> IdentityConfig:
    """A fleet CA of its own in ``directory`` (made unless it is there), its CRL beside it."""
    ensure_fleet_ca(directory / "fleet-ca")
    settings: dict[str, Any] = {
        "fleet_ca_dir": directory / "fleet-ca",
        "certificate_lifetime": timedelta(days=90),
        "crl_file": directory / "fleet-ca.crl",
    }
    return IdentityConfig(**(settings | changes))


@contextmanager
def running_platform(database_url: str, directory: Path, **changes: Any) -> Iterator[Platform]:
    """The real API app (in process) over ``database_url``, with a fleet CA in
    ``directory`` and a manufacturer's and a clinic's token."""
    upgrade_schema(database_url)
    config = identity_config(directory, **changes)
    read_models = ReadModelStore(database_url)
    engine = read_models.engine
    _, manufacturer = create_token(engine, Role.MANUFACTURER, None, "fleet-ops")
    _, clinic = create_token(engine, Role.CLINIC, "clinic-alpha", "front desk")
    app = create_app(
        database_url, lambda: open_event_store(database_url),
        BrokerAddress(host="127.0.0.1", port=free_port()), MASTER_KEY,
        log_key=LogKeyPlace(log_key_path(database_url, directory / "log.key")),
        identity=config,
    )  # fmt: skip
    store = open_event_store(database_url)
    try:
        with TestClient(app, raise_server_exceptions=True) as client:
            yield Platform(
                database_url, config, client, bearer(manufacturer), bearer(clinic), store, engine
            )
    finally:
        store.close()
        read_models.close()
