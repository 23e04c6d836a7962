"""C2SP signed notes and checkpoints with Ed25519: the exact bytes, verification under
the right key only, and a witness's verdict."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.transparency import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    consistency_path,
    judge,
    leaf_hash,
    tree_nodes,
)

SEED = bytes(range(32))


def _signer(name: str = "coreline/log/v1") -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(SEED))


def test_a_checkpoint_note_has_the_c2sp_layout() -> None:
    """Body: origin, decimal size, base64 root; then a blank line and one signature line
    whose first four bytes are SHA-256(name || LF || 0x01 || key)'s first four."""
    signer = _signer()
    checkpoint = Checkpoint("coreline/log/v1", 37, bytes(32))
    note = signer.sign(checkpoint.text())
    body, _, signature = note.partition("\n\n")
    assert body + "\n" == f"coreline/log/v1\n37\n{base64.b64encode(bytes(32)).decode()}\n"
    assert signature.startswith("\u2014 coreline/log/v1 ")
    assert signature.endswith("\n")
    signed = base64.b64decode(signature.split(" ")[2])
    public = signer.verifier.public_key
    assert signed[:4] == hashlib.sha256(b"coreline/log/v1\n\x01" + public).digest()[:4]
    assert len(signed) == 68
    assert Checkpoint.parse(signer.verifier.verify(note)) == checkpoint


def test_a_verifier_key_round_trips_through_its_text() -> None:
    """``name+hexhash+base64(0x01||key)`` parses back to the same key, and a wrong hash
    is refused."""
    verifier = _signer().verifier
    text = verifier.text()
    name, hash_hex, encoded = text.split("+", 2)
    assert name == "coreline/log/v1"
    assert hash_hex == verifier.key_hash.hex()
    assert base64.b64decode(encoded) == b"\x01" + verifier.public_key
    assert Verifier.parse(text) == verifier
    with pytest.raises(NoteError, match="hash"):
        Verifier.parse(f"{name}+00000000+{encoded}")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda note: note.replace("\n37\n", "\n38\n"),
        lambda note: note.replace("coreline/log/v1\n", "coreline/log/v2\n", 1),
        lambda note: note[:-10] + ("A" if note[-10] != "A" else "B") + note[-9:],
        lambda note: note.split("\n\n")[0] + "\n",
    ],
    ids=["size", "origin", "signature", "unsigned"],
)
def test_an_altered_note_does_not_verify(tamper: "object") -> None:
    """Changing the size, the origin or the signature, or dropping it, fails verification."""
    signer = _signer()
    note = signer.sign(Checkpoint("coreline/log/v1", 37, bytes(32)).text())
    with pytest.raises(NoteError):
        signer.verifier.verify(tamper(note))  # type: ignore[operator]


def test_another_key_by_the_same_name_does_not_verify() -> None:
    """A note signed by another key under the log's name is refused."""
    impostor = Signer("coreline/log/v1", Ed25519PrivateKey.generate())
    note = impostor.sign(Checkpoint("coreline/log/v1", 1, bytes(32)).text())
    with pytest.raises(NoteError, match="no signature"):
        _signer().verifier.verify(note)


def test_extension_lines_survive_and_bad_bodies_are_refused() -> None:
    """Extension lines after the root are kept; a size with a leading zero or a short
    root is not a checkpoint."""
    root = base64.b64encode(bytes(32)).decode()
    parsed = Checkpoint.parse(f"o\n5\n{root}\nextra\n")
    assert parsed.extensions == ("extra",)
    assert parsed.text() == f"o\n5\n{root}\nextra\n"
    for bad in (f"o\n05\n{root}\n", "o\n5\nAAAA\n", f"o\n5\n{root}"):
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_a_witness_accepts_growth_and_names_each_inconsistency() -> None:
    """Growth with a valid proof passes; a smaller size, a different root at the same
    size, and a proof that does not verify each fail with their reason."""
    leaves = [leaf_hash(bytes([number]) * 32) for number in range(20)]
    big, nodes = tree_nodes(leaves)
    small, _ = tree_nodes(leaves[:12])
    kept = Checkpoint("o", 12, small.root())
    latest = Checkpoint("o", 20, big.root())
    proof = consistency_path(12, 20, nodes.__getitem__)
    assert judge(None, latest, None).consistent
    assert judge(kept, latest, proof).consistent
    assert "shrank" in judge(latest, kept, None).reason
    split = judge(kept, Checkpoint("o", 12, bytes(32)), None)
    assert not split.consistent
    assert "split view" in split.reason
    rewritten = judge(kept, Checkpoint("o", 20, bytes(32)), proof)
    assert not rewritten.consistent
    assert "inconsistent" in rewritten.reason
