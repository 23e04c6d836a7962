"""The agent's own identity requests against a running ``coreline api``: enrolment
with a factory certificate, a seal key rotation recorded as one registration and one
revocation, and a rotation whose answer was lost settled by asking again."""

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from edge_agent.enrolment import EnrolmentError, FactoryIdentity, IdentityFiles, enrol_device
from edge_agent.renewal import NEXT_SEAL_KEY, renew, rotate_seal_key
from fleet_ca import CheckedRequest, create_fleet_ca, new_key_pem, public_key_of
from seal_keys import SealKey
from services.api import commands
from services.eventstore import EventStore, open_event_store, upgrade_schema
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

DEVICE = "HP-000961"
SERIAL = "SN-961"
UNUSED_CLAIM = "clm_never-issued"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, EventStore, Path]]:
    """``coreline api`` over a store where the device is registered, with a fleet CA
    and a factory CA: (its address, the store, the factory CA's directory)."""
    url = f"sqlite:///{tmp_path / 'coreline.db'}"
    upgrade_schema(url)
    create_fleet_ca(tmp_path / "fleet-ca")
    create_fleet_ca(tmp_path / "factory")
    store = open_event_store(url)
    commands.register_device(store, DEVICE, "CX-2", "fleet-ops")
    port = free_port()
    settings = {
        "database_url": url, "fleet_ca_dir": str(tmp_path / "fleet-ca"),
        "factory_ca_file": str(tmp_path / "factory" / "ca.crt"),
        "log_key_file": str(tmp_path / "log.key"),
    }  # fmt: skip
    try:
        with serving_api(port, tmp_path / "api.log", **settings):
            yield f"http://127.0.0.1:{port}", store, tmp_path / "factory"
    finally:
        store.close()


def _factory_identity(factory: Path) -> FactoryIdentity:
    from fleet_ca import FleetCa  # noqa: PLC0415

    key = new_key_pem()
    issued = FleetCa.load(factory).issue_device(
        CheckedRequest(DEVICE, public_key_of(key), ""), lifetime=timedelta(days=3650)
    )
    return FactoryIdentity(issued.pem.decode(), key)


def test_factory_enrolment_then_rotation_and_a_lost_answer(
    served: tuple[str, EventStore, Path], tmp_path: Path
) -> None:
    """The factory certificate enrols the device; ``rotate_seal_key`` replaces its seal
    key (the platform registers the new, revokes the old in one append); a renewal
    then signs with the new key; a rotation asked again after its answer was lost
    adopts the key it had sent."""
    api, store, factory = served
    files = IdentityFiles(tmp_path / "identity")
    enrolled = enrol_device(files, DEVICE, SERIAL, api, factory=_factory_identity(factory))
    assert not enrolled.replayed
    assert oct((files.tls.stat().st_mode) & 0o777) == "0o600"
    first = SealKey.load(files.seal_key)
    with pytest.raises(EnrolmentError, match="enrolled identity already"):
        enrol_device(files, DEVICE, SERIAL, api, claim_secret=UNUSED_CLAIM)

    new_key_id = rotate_seal_key(files)

    rotated = SealKey.load(files.seal_key)
    assert rotated.key_id == new_key_id != first.key_id
    assert not (files.directory / NEXT_SEAL_KEY).exists()
    registry = [orjson.loads(event.body) for event in store.read_stream(f"registry:{DEVICE}")]
    assert [event["type"] for event in registry[-2:]] == [
        "device.key_registered", "device.key_revoked",
    ]  # fmt: skip
    assert registry[-1]["data"]["key_id"] == first.key_id
    renewed = renew(files)
    assert renewed.fingerprint != enrolled.fingerprint

    # The answer to a rotation lost: the device still holds the old key and the new
    # one pending, while the platform has recorded the rotation.
    pending = files.directory / NEXT_SEAL_KEY
    pending.write_bytes(files.seal_key.read_bytes())
    os.chmod(pending, 0o600)
    files.seal_key.write_bytes(first.pem())
    assert rotate_seal_key(files) == new_key_id
    assert SealKey.load(files.seal_key).key_id == new_key_id
    assert len(store.read_stream(f"registry:{DEVICE}")) == len(registry) + 1  # the renewal
