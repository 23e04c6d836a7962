"""A decommissioned device on a real store (docs/device-identity.md): the ingest core
refuses its later batches, sealed and valid as they are, as ``identity`` dead letters
(the cache notices within its refresh), while its history still verifies with
``coreline verify`` and in an evidence bundle checked by ``coreline-verify``."""

import os
import subprocess
import sys
from pathlib import Path

import orjson

from gateway.seal_gate import KeyCache
from schemas import RejectionReason
from services.merkle_log import create_key_file
from tests.support.identity import Handpiece, running_platform
from tests.support.log_keeping import log_and_sign
from tests.support.sealed_vectors import ingest, load_sealed

ORIGIN = "coreline/log/v1"


def _coreline(*args: str, url: str, key: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CORELINE_")}
    env |= {"CORELINE_DATABASE_URL": url, "CORELINE_LOG_KEY_FILE": str(key)}
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_a_decommissioned_devices_later_events_are_refused_and_its_history_verifies(
    store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """The sealed vector's device enrols with the vector's seal key; two batches are
    stored; after decommissioning, its two later batches (sealed by the same
    registered key) are dead-lettered whole as ``identity``, nothing more is stored,
    and the stream, the registry and an evidence bundle of the device all verify."""
    vector = load_sealed(vectors_dir)
    device_id = vector.device_id
    batches = [(vector.topic, batch) for batch in vector.batches()]
    key = tmp_path / "keys" / "coreline-log.key"
    assert create_key_file(key, ORIGIN)
    with running_platform(store_url, tmp_path) as platform:
        store = platform.store
        platform.register(device_id)
        secret = platform.claim(device_id, "SN-0014")
        body = Handpiece(device_id, "SN-0014").enrolment(secret, seal_public_key=vector.public_key)
        assert platform.client.post("/api/v1/enrolment", json=body).status_code == 201
        ingest(store, batches[:2])
        head = store.head(device_id)
        assert head is not None
        assert head.seq == 20
        retired = platform.client.post(
            f"/api/v1/devices/{device_id}/decommission", json={"reason": "returned, scrapped"},
            headers=platform.manufacturer,
        )  # fmt: skip
        assert retired.status_code == 202, retired.text

        ingest(store, batches[2:])

        head = store.head(device_id)
        assert head is not None
        assert head.seq == 20
        letters = [letter for letter in store.dead_letters() if letter.device_id == device_id]
        assert [letter.reason for letter in letters] == [RejectionReason.IDENTITY] * 2
        assert all("decommissioned" in letter.detail for letter in letters)

        verified = _coreline("verify", "--all", url=store_url, key=key)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        lines = [line.split() for line in verified.stdout.splitlines()]
        assert [device_id, "verified", "20", "events"] in lines
        assert [device_id, "signed", "through", "seq", "20"] in lines
        assert [f"registry:{device_id}", "verified", "7", "events"] in lines
        log_and_sign(store, store_url, key)
        bundle = tmp_path / "device.jsonl"
        exported = _coreline("audit", "export", "--device", device_id, "--out", str(bundle),
                             url=store_url, key=key)  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        checked = subprocess.run(
            [sys.executable, "-m", "coreline_verify", str(bundle)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        kinds = [
            orjson.loads(line).get("event", {}).get("type")
            for line in bundle.read_text().splitlines()
        ]
        assert "device.decommissioned" in kinds


def test_the_gateways_cache_notices_a_decommissioning_within_its_refresh(
    store_url: str, tmp_path: Path
) -> None:
    """A cached device learns of its decommissioning once its entry is older than the
    refresh interval, not before (the freshness the seal keys have too)."""
    now = [0.0]
    cache = KeyCache(refresh_after_s=5.0, clock=lambda: now[0])
    with running_platform(store_url, tmp_path) as platform:
        platform.register("HP-000801")
        assert cache.keys(platform.store, "HP-000801", None).retired is None
        answer = platform.client.post(
            "/api/v1/devices/HP-000801/decommission", json={"reason": "lost"},
            headers=platform.manufacturer,
        )  # fmt: skip
        assert answer.status_code == 202
        now[0] = 4.9
        assert cache.keys(platform.store, "HP-000801", None).retired is None
        now[0] = 5.0
        retired = cache.keys(platform.store, "HP-000801", None).retired
        assert retired is not None
        assert "decommissioned" in retired
