"""``coreline audit witness``: keep the log's checkpoints and check each new one
against the last one kept.

The state directory holds the verifier key (trusted on first use unless one is
given) and the newest checkpoint found consistent.  A checkpoint that does not
verify, or does not extend the kept one, is reported and never kept: the kept one
stays the evidence.
"""

import base64
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import orjson

from services.merkle_log.errors import MerkleLogError
from services.merkle_log.log_store import MerkleLog
from services.transparency import Checkpoint, NoteError, Verdict, Verifier, judge

KEY_FILE: Final = "log-key.verifier"
CHECKPOINT_FILE: Final = "checkpoint"
_TIMEOUT_S: Final = 30


class CheckpointSource(Protocol):
    """Where a witness reads the log from."""

    def latest_note(self) -> str: ...

    def consistency(self, old_size: int, new_size: int) -> list[bytes]: ...

    def verifier_key(self) -> str: ...


class ApiSource:
    """The platform's API (``/api/v1/log/...``) with a bearer token: for a witness
    outside the operator."""

    def __init__(self, base_url: str, token: str) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise MerkleLogError(f"--api takes an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            f"{self.base_url}/api/v1/log/{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
                body: bytes = response.read()
        except OSError as error:
            raise MerkleLogError(f"the API did not answer {path}: {error}") from None
        return body

    def latest_note(self) -> str:
        return self._get("checkpoint").decode()

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        answer = orjson.loads(self._get(f"proofs/consistency?from={old_size}&to={new_size}"))
        return [base64.b64decode(hash_) for hash_ in answer["proof"]]

    def verifier_key(self) -> str:
        return self._get("public-key").decode().strip()


class DatabaseSource:
    """The log's tables directly, for a witness run by the operator."""

    def __init__(self, merkle_log: MerkleLog, verifier: Verifier | None) -> None:
        self.log = merkle_log
        self.verifier = verifier

    def latest_note(self) -> str:
        latest = self.log.latest_checkpoint()
        if latest is None:
            raise MerkleLogError("the log has no signed checkpoint yet")
        return latest.note

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return self.log.consistency(old_size, new_size)

    def verifier_key(self) -> str:
        if self.verifier is None:
            raise MerkleLogError("no public key known: pass --public-key")
        return self.verifier.text()


@dataclass(frozen=True, slots=True)
class WitnessReport:
    verdict: Verdict
    checkpoint: Checkpoint | None
    trusted_on_first_use: str | None
    """The verifier key this run started trusting, when it had none."""


def witness(state: Path, source: CheckpointSource, public_key: str | None = None) -> WitnessReport:
    """Check the source's latest checkpoint against the one kept in ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    key_path, kept_path = state / KEY_FILE, state / CHECKPOINT_FILE
    first_use = None
    if public_key is not None:
        verifier = Verifier.parse(public_key)
        if key_path.exists() and Verifier.parse(key_path.read_text()) != verifier:
            return _refused(f"--public-key differs from the key kept in {key_path}")
    elif key_path.exists():
        verifier = Verifier.parse(key_path.read_text())
    else:
        verifier = Verifier.parse(source.verifier_key())
        first_use = verifier.text()
    note = source.latest_note()
    try:
        latest = Checkpoint.parse(verifier.verify(note))
    except NoteError as error:
        return _refused(f"bad signature: {error}")
    if latest.origin != verifier.name:
        return _refused(f"the checkpoint's origin {latest.origin!r} is not the key's")
    kept = Checkpoint.parse(verifier.verify(kept_path.read_text())) if kept_path.exists() else None
    proof = None
    if kept is not None and 0 < kept.size < latest.size:
        try:
            proof = source.consistency(kept.size, latest.size)
        except (MerkleLogError, KeyError, ValueError) as error:
            return _refused(f"no consistency proof from {kept.size} to {latest.size}: {error}")
    verdict = judge(kept, latest, proof)
    if verdict.consistent:
        key_path.write_text(verifier.text() + "\n")
        kept_path.write_text(note)
    return WitnessReport(verdict, latest, first_use)


def _refused(reason: str) -> WitnessReport:
    return WitnessReport(Verdict(False, reason), None, None)
