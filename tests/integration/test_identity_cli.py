"""Device identity on the command line, against a real store: ``coreline device
claim`` refuses an unregistered device naming why, ``coreline device identity``
prints the fold, ``coreline device decommission`` retires a device and writes the
CRL, and ``coreline fleet-ca crl`` writes it again on demand."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fleet_ca import create_fleet_ca, revoked_serials
from services.api import commands
from services.eventstore import open_event_store, upgrade_schema
from tests.support.identity import Handpiece, running_platform

DEVICE = "HP-000951"


def test_claim_identity_decommission_and_crl_on_the_command_line(tmp_path: Path) -> None:
    """Each command does what it says and records it; refusals exit 2 naming why."""
    url = f"sqlite:///{tmp_path / 'coreline.db'}"
    upgrade_schema(url)
    create_fleet_ca(tmp_path / "fleet-ca")
    crl = tmp_path / "broker" / "fleet-ca.crl"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env |= {"CORELINE_DATABASE_URL": url, "CORELINE_FLEET_CA_DIR": str(tmp_path / "fleet-ca"),
            "CORELINE_FLEET_CA_CRL_FILE": str(crl)}  # fmt: skip

    def coreline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services", *args], capture_output=True, text=True, env=env,
            timeout=120, check=False,
        )  # fmt: skip

    refused = coreline("device", "claim", DEVICE, "--serial", "SN-951")
    assert refused.returncode == 2
    assert f"{DEVICE} is not registered" in refused.stderr

    with running_platform(url, tmp_path) as platform:
        answer = platform.enrolled(Handpiece(DEVICE, "SN-951"))
    shown = coreline("device", "identity", DEVICE)
    assert shown.returncode == 0, shown.stderr
    identity = json.loads(shown.stdout)
    assert identity["serial"] == "SN-951"
    assert identity["claim"] == "used"
    assert identity["certificate"]["fingerprint"] == answer["fingerprint"]

    retired = coreline("device", "decommission", DEVICE, "--reason", "water damage")
    assert retired.returncode == 0, retired.stderr
    assert f"{DEVICE} decommissioned; 1 certificates revoked" in retired.stdout
    assert revoked_serials(crl.read_bytes()) == {answer["serial"]}
    again = coreline("device", "decommission", DEVICE, "--reason", "twice")
    assert again.returncode == 2
    assert "was decommissioned at" in again.stderr

    crl.unlink()
    rewritten = coreline("fleet-ca", "crl")
    assert rewritten.returncode == 0, rewritten.stderr
    assert f"{crl}: 1 revoked certificates" in rewritten.stdout
    assert revoked_serials(crl.read_bytes()) == {answer["serial"]}

    store = open_event_store(url)
    try:
        kinds = [event.type for event in store.read_stream(f"registry:{DEVICE}")]
        commands.assign_device(store, DEVICE, None, "ops")  # taking it back still works
    finally:
        store.close()
    assert kinds[-2:] == ["device.decommissioned", "device.certificate_revoked"]
