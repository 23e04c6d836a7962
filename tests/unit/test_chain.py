"""Hash-chain verification from stored bytes, and what tampering looks like."""

from pathlib import Path

import pytest

from schemas import ChainLink, ChainStatus, link_of_wire_event, verify_chain
from schemas.canonical import sha256_hex
from tests.support.vectors import STREAM_DEVICES, load_stream


def _links(vectors_dir: Path, device_id: str) -> list[ChainLink]:
    return [link_of_wire_event(event) for event in load_stream(vectors_dir, device_id)["events"]]


@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_vector_chains_verify_to_their_expected_head(vectors_dir: Path, device_id: str) -> None:
    """Every vector stream verifies, ending at the expected last seq and hash."""
    expected = load_stream(vectors_dir, device_id)["expected"]
    verdict = verify_chain(_links(vectors_dir, device_id))
    assert verdict.status is ChainStatus.VERIFIED
    assert (verdict.last_seq, verdict.last_hash) == (expected["last_seq"], expected["last_hash"])


def test_altered_body_breaks_at_that_event(vectors_dir: Path) -> None:
    """A changed byte in a stored event is named as the first bad event."""
    links = _links(vectors_dir, "HP-000011")
    victim = links[10]
    links[10] = ChainLink(
        victim.seq, victim.body.replace(b'"cores":', b'"cores":1'), victim.hash, victim.event_id
    )
    verdict = verify_chain(links)
    assert verdict.status is ChainStatus.BROKEN
    assert (verdict.first_bad_seq, verdict.first_bad_event_id) == (victim.seq, victim.event_id)


def test_rehashed_alteration_breaks_at_the_successor(vectors_dir: Path) -> None:
    """Altering an event and recomputing its hash still breaks the next event's link."""
    links = _links(vectors_dir, "HP-000011")
    victim = links[10]
    body = victim.body.replace(b'"depth_mm":1.5', b'"depth_mm":2.5')
    assert body != victim.body
    links[10] = ChainLink(victim.seq, body, sha256_hex(body), victim.event_id)
    verdict = verify_chain(links)
    assert verdict.status is ChainStatus.BROKEN
    assert verdict.first_bad_seq == victim.seq + 1


def test_swapped_events_break_the_chain(vectors_dir: Path) -> None:
    """Two events exchanged in order are caught."""
    links = _links(vectors_dir, "HP-000012")
    links[4], links[5] = links[5], links[4]
    assert verify_chain(links).status is ChainStatus.BROKEN


def test_swapped_seq_numbers_break_the_chain(vectors_dir: Path) -> None:
    """Relabelling stored rows' seq numbers is caught: the body says which seq it is."""
    links = _links(vectors_dir, "HP-000012")
    a, b = links[4], links[5]
    links[4] = ChainLink(a.seq, b.body, b.hash, b.event_id)
    links[5] = ChainLink(b.seq, a.body, a.hash, a.event_id)
    verdict = verify_chain(links)
    assert verdict.status is ChainStatus.BROKEN
    assert verdict.first_bad_seq == a.seq


def test_missing_event_makes_the_chain_incomplete(vectors_dir: Path) -> None:
    """A removed event leaves an incomplete chain that names the gap."""
    links = _links(vectors_dir, "HP-000013")
    del links[7]
    verdict = verify_chain(links)
    assert verdict.status is ChainStatus.INCOMPLETE
    assert verdict.problem == "events 8..8 are missing"


def test_missing_start_makes_the_chain_incomplete(vectors_dir: Path) -> None:
    """A stream whose first events are absent cannot be verified from genesis."""
    assert verify_chain(_links(vectors_dir, "HP-000013")[3:]).status is ChainStatus.INCOMPLETE
