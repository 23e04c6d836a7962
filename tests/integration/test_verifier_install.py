"""The verifier installs alone into a fresh virtual environment and verifies there."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.evidence_log import sealed_source, sealed_vector

VERIFIER = Path(__file__).resolve().parents[2] / "verifier"


@pytest.fixture(scope="module")
def verifier_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("verifier") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The package from its own directory, with its one dependency from the index
    # (or pip's cache): nothing of the platform is installed.
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(VERIFIER)],
        check=True,
        timeout=600,
    )
    return venv


@pytest.mark.slow
def test_the_installed_verifier_checks_a_bundle_on_its_own(
    verifier_venv: Path, tmp_path: Path
) -> None:
    """``pip install ./verifier`` brings cryptography and nothing of the platform, and
    ``coreline-verify`` there verifies a bundle (exit 0, the session's facts) and
    names a tampered byte (exit 1)."""
    pip = str(verifier_venv / "bin" / "pip")
    listed = subprocess.run(
        [pip, "list", "--format=freeze", "--disable-pip-version-check"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert {"coreline-verify", "cryptography"} <= names
    assert "coreline" not in names
    source = sealed_source()
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_bytes(source.bundle_bytes(witnesses=[20]))
    kept = tmp_path / "kept.txt"
    kept.write_text(source.signer.checkpoint(source.log, 20))
    command = str(verifier_venv / "bin" / "coreline-verify")
    # Run from an empty directory, so the repository's packages cannot be imported.
    done = subprocess.run(
        [command, str(bundle), "--witness", str(kept)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = sealed_vector()["expected"]
    assert (
        f"cores counted {expected['cores_counted']}, reported {expected['cores_reported']}, "
        f"reconciled yes, coverage {expected['coverage_pct']:.4f}%"
    ) in done.stdout
    bundle.write_bytes(bundle.read_bytes().replace(b'"actuations":24', b'"actuations":25', 1))
    tampered = subprocess.run(
        [command, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert tampered.returncode == 1
    assert tampered.stderr.startswith("FAILED: HP-000014 seq ")
    assert "hash does not match its bytes" in tampered.stderr
