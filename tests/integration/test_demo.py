"""``coreline demo`` from a clean virtual environment, checked through its own API:
devices online, sessions audited, needle alerts raised and delivered to the clinics'
webhooks, nothing dead-lettered, and a clean stop at ``--duration``."""

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
DURATION_S = 60


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with Coreline installed from this checkout (no dev extras)."""
    venv = tmp_path_factory.mktemp("demo") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True, timeout=600,
    )  # fmt: skip
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_the_demo_runs_the_whole_platform(clean_venv: Path, tmp_path: Path, broker: str) -> None:
    """Within its minute the demo's API shows online devices, reconciled sessions, a
    needle alert delivered by webhook and no dead letters; then it stops by itself.
    With Mosquitto (installed here, so ``auto`` picks it) and with amqtt, the Python
    broker of machines without one, which speaks only MQTT 3.1.1: agents, gateway and
    notifier fall back to it."""
    port = free_port()
    demo = subprocess.Popen(
        [str(clean_venv / "bin" / "coreline"), "demo", "--duration", str(DURATION_S),
         "--port", str(port), "--data-dir", str(tmp_path / "data"), "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        token = _wait_for_token(output, demo)
        seen = _watch_api(f"http://127.0.0.1:{port}", token, demo)
        assert demo.wait(timeout=DURATION_S + 60) == 0, "".join(output)
    finally:
        if demo.poll() is None:
            demo.kill()
    reader.join(timeout=5)
    if demo.stdout is not None:
        demo.stdout.close()
    assert seen["online"] > 0
    assert seen["reconciled"] > 0
    assert seen["needle_delivered"] > 0
    assert seen["dead_letters"] == 0
    text = "".join(output)
    assert "dashboard: http://127.0.0.1:" in text
    assert ("amqtt" in text) == (broker == "amqtt")
    assert "Traceback" not in text


def _wait_for_token(output: list[str], demo: "subprocess.Popen[str]") -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in list(output):
            if line.startswith("token manufacturer: "):
                return line.split(": ", 1)[1].strip()
        assert demo.poll() is None, "".join(output)
        time.sleep(0.2)
    pytest.fail("the demo printed no manufacturer token:\n" + "".join(output))


def _watch_api(base: str, token: str, demo: "subprocess.Popen[str]") -> dict[str, int]:
    """Poll the API while the demo runs; the best figures seen before it stops."""
    headers = {"Authorization": f"Bearer {token}"}
    seen = {"online": 0, "reconciled": 0, "needle_delivered": 0, "dead_letters": 0}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while demo.poll() is None:
            try:
                devices = client.get("/api/v1/devices?limit=500").json()["items"]
                sessions = client.get("/api/v1/sessions?limit=500").json()["items"]
                alerts = client.get("/api/v1/alerts?limit=500").json()["items"]
                letters = client.get("/api/v1/dead-letters").json()["items"]
                delivered = sum(_delivered(client, alert) for alert in alerts[:20])
            except (httpx.HTTPError, KeyError):
                break  # the demo is stopping
            seen["online"] = max(seen["online"], sum(bool(d["online"]) for d in devices))
            seen["reconciled"] = max(
                seen["reconciled"], sum(s["reconciled"] is True for s in sessions)
            )
            seen["needle_delivered"] = max(seen["needle_delivered"], delivered)
            seen["dead_letters"] = max(seen["dead_letters"], len(letters))
            time.sleep(3)
    return seen


def _delivered(client: httpx.Client, alert: dict[str, Any]) -> int:
    if not alert["rule"].startswith("needle"):
        return 0
    deliveries = client.get(f"/api/v1/alerts/{alert['alert_id']}/deliveries").json()
    return sum(delivery["state"] == "delivered" for delivery in deliveries)
