"""The device's end, through the real command line: ``coreline device claim`` prints a
claim secret, ``coreline agent enrol`` turns it into an identity directory against a
running ``coreline api``, and ``coreline agent --identity-dir`` delivers over mutual
TLS to the shipped broker, renews its own short-lived certificate at two thirds of
its life, and after the old certificate is revoked (``coreline device cert revoke``,
which rewrites the CRL and signals the broker) still gets back in with the new one."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from fleet_ca import certificate_facts, create_fleet_ca
from services.api import commands
from services.eventstore import open_event_store, upgrade_schema
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port
from tests.support.secured_broker import Clients, Identity, running_secured_broker
from tests.support.streams import punch_data

DEVICE = "HP-000901"
SERIAL = "SN-2026-000901"
LIFETIME_S = 12


def _firmware(n: int) -> bytes:
    line = {"type": "cores.punched", "occurred_at": f"2026-11-25T09:00:{n:02d}.000Z",
            "data": punch_data(n)}  # fmt: skip
    return orjson.dumps(line) + b"\n"


def _until(condition: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_handpiece_enrols_delivers_renews_itself_and_outlives_its_old_certificate(  # noqa: PLR0915 - one story, told in order
    tmp_path: Path,
) -> None:
    """Claim → enrol → deliver → renew (by itself) → revoke the old certificate →
    reconnect with the new one and deliver again."""
    url = f"sqlite:///{tmp_path / 'coreline.db'}"
    upgrade_schema(url)
    store = open_event_store(url)
    commands.register_device(store, DEVICE, "CX-2", "fleet-ops")
    ca = tmp_path / "fleet-ca"
    create_fleet_ca(ca)
    identity_dir = tmp_path / "identity"
    with running_secured_broker(tmp_path / "pki", [], [], ca=ca) as broker:
        assert broker.crl is not None
        (tmp_path / "broker.pid").write_text(str(broker.pid))
        settings = {
            "database_url": url, "fleet_ca_dir": str(ca), "fleet_ca_crl_file": str(broker.crl),
            "fleet_ca_broker_pid_file": str(tmp_path / "broker.pid"),
            "fleet_ca_certificate_lifetime": f"PT{LIFETIME_S}S",
            "log_key_file": str(tmp_path / "log.key"),
        }  # fmt: skip
        env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
        env |= {f"CORELINE_{name.upper()}": value for name, value in settings.items()}

        def coreline(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "services", *args], capture_output=True, text=True,
                env=env | extra, timeout=120, check=False,
            )  # fmt: skip

        claimed = coreline("device", "claim", DEVICE, "--serial", SERIAL)
        assert claimed.returncode == 0, claimed.stderr
        secret = claimed.stdout.strip().splitlines()[-1]
        assert secret.startswith("clm_")
        (tmp_path / "claim").write_text(secret + "\n")

        port = free_port()
        with serving_api(port, tmp_path / "api.log", **settings):
            enrolled = coreline(
                "agent", "enrol", "--device-id", DEVICE, "--serial", SERIAL,
                "--api", f"http://127.0.0.1:{port}", "--claim-secret-file", str(tmp_path / "claim"),
                "--identity-dir", str(identity_dir),
            )  # fmt: skip
            assert enrolled.returncode == 0, enrolled.stderr
            first = certificate_facts((identity_dir / "tls.pem").read_bytes())
            assert first.common_name == DEVICE

            clients = Clients(broker)
            watcher = clients.account("gateway")
            watcher.subscribe(f"coreline/v1/devices/{DEVICE}/events")
            with (tmp_path / "agent.log").open("wb") as agent_log:
                agent = subprocess.Popen(
                    [sys.executable, "-m", "services", "agent", "--identity-dir",
                     str(identity_dir), "--mqtt-url", f"mqtts://127.0.0.1:{broker.device_port}",
                     "--outbox", str(tmp_path / "outbox.db")],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=agent_log, env=env,
                )  # fmt: skip
            assert agent.stdin is not None
            try:
                agent.stdin.write(_firmware(1))
                agent.stdin.flush()
                assert _until(lambda: len(watcher.received) >= 1, 30), _log(tmp_path)

                def renewed() -> bool:
                    held = certificate_facts((identity_dir / "tls.pem").read_bytes())
                    return held.fingerprint != first.fingerprint

                assert _until(renewed, LIFETIME_S * 2), _log(tmp_path)
                assert datetime.now(UTC) < first.not_after  # before the old one expired
                second = certificate_facts((identity_dir / "tls.pem").read_bytes())
                registry = store.read_stream(f"registry:{DEVICE}")
                issued = orjson.loads(registry[-1].body)["data"]
                assert issued["certificate_fingerprint"] == second.fingerprint
                assert issued["replaces"] == first.fingerprint

                revoked = coreline(
                    "device", "cert", "revoke", DEVICE, "--fingerprint", first.fingerprint,
                    "--reason", "superseded",
                )  # fmt: skip
                assert revoked.returncode == 0, revoked.stderr
                assert "broker signalled" in revoked.stdout
                # The broker keeps connections it accepted; take over the agent's client
                # id (its device id) once with the new certificate, so the agent must
                # reconnect, and its only way back in is the renewed certificate.
                kicker = Identity(identity_dir / "tls.pem", identity_dir / "tls.pem")
                broker.devices[DEVICE] = kicker
                clients.device(DEVICE, client_id=DEVICE)
                delivered = len(watcher.received)
                agent.stdin.write(_firmware(2))
                agent.stdin.flush()
                assert _until(lambda: len(watcher.received) > delivered, 40), _log(tmp_path)
            finally:
                agent.stdin.close()
                agent.terminate()
                agent.wait(timeout=30)
                clients.close_all()
    store.close()
    assert "connecting with the renewed certificate" in _log(tmp_path)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "agent.log").read_text(errors="replace")
