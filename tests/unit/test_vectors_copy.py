"""The vendored protocol vectors must stay byte-identical to the shared originals."""

from tests.conftest import SHARED_VECTORS_DIR, VENDORED_VECTORS_DIR


def test_vendored_vectors_match_the_shared_originals() -> None:
    """The vendored vectors are byte-identical to the shared originals, where those are present."""
    vendored = {path.name: path.read_bytes() for path in VENDORED_VECTORS_DIR.iterdir()}
    assert {"invalid.json", "HP-000011.stream.json"} <= vendored.keys()
    if SHARED_VECTORS_DIR.is_dir():  # beside the shared checkout, the copy must be exact
        shared = {path.name: path.read_bytes() for path in SHARED_VECTORS_DIR.iterdir()}
        assert vendored == shared
