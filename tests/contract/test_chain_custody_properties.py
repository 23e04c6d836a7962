"""Chain custody as a property: however a device's events arrive (any order, resent,
some never sent) and whatever a second board on the same id sends, the stored stream
is a linked prefix of one board's chain and holds nothing of the other beyond what
the two share.  Run on the in-memory store, and with fewer examples on SQLite."""

import functools
import itertools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import GENESIS_HASH, SealedEvent
from services.eventstore import (
    AppendResult,
    Cursor,
    EventStore,
    InMemoryEventStore,
    StreamHead,
    open_event_store,
    upgrade_schema,
)
from tests.support.chains import other_board
from tests.support.streams import device_stream

DEVICE = "HP-000001"
LENGTH = 10

Chain = tuple[SealedEvent, ...]
Arrival = tuple[bool, int, bool]
"""(from the other board, seq, starts a new message)."""

arrivals_strategy = st.lists(
    st.tuples(st.booleans(), st.integers(1, LENGTH), st.booleans()), max_size=40
)
fork_strategy = st.integers(1, LENGTH)
"""The first seq at which the boards differ: they share ``fork - 1`` events."""


@functools.cache
def _boards(fork: int) -> tuple[Chain, Chain]:
    mine = device_stream(DEVICE, LENGTH)
    return tuple(mine), tuple(other_board(mine, fork))


def _messages(arrivals: list[Arrival], mine: Chain, theirs: Chain) -> list[list[SealedEvent]]:
    messages: list[list[SealedEvent]] = []
    for foreign, seq, new_message in arrivals:
        if new_message or not messages:
            messages.append([])
        messages[-1].append((theirs if foreign else mine)[seq - 1])
    return messages


@contextmanager
def _memory_store() -> Iterator[EventStore]:
    yield InMemoryEventStore()


@contextmanager
def _sqlite_store() -> Iterator[EventStore]:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'coreline.db'}"
        upgrade_schema(url)
        store = open_event_store(url)
        try:
            yield store
        finally:
            store.close()


def _check_custody(
    open_store: Callable[[], AbstractContextManager[EventStore]],
    fork: int,
    arrivals: list[Arrival],
) -> None:
    mine, theirs = _boards(fork)
    with open_store() as store:
        head = None
        for message in _messages(arrivals, mine, theirs):
            result = store.append(message)
            head = _assert_custody(store, result, head, mine, theirs, fork)
        # Nothing held or refused stands in the way of completing a chain: once both
        # boards have sent everything, the stream is one of them, whole.
        for board in (mine, theirs):
            result = store.append(list(reversed(board)))
            head = _assert_custody(store, result, head, mine, theirs, fork)
        assert head is not None
        assert head.seq == LENGTH
        assert head.hash in (mine[-1].hash, theirs[-1].hash)


def _assert_custody(
    store: EventStore,
    result: AppendResult,
    head_before: StreamHead | None,
    mine: Chain,
    theirs: Chain,
    fork: int,
) -> StreamHead | None:
    stream = store.read_stream(DEVICE)
    hashes = [event.hash for event in stream]
    # A linked prefix 1..head ...
    assert [event.seq for event in stream] == list(range(1, len(stream) + 1))
    assert all(event.prev_hash == GENESIS_HASH for event in stream[:1])
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(stream))
    # ... of one board's chain, with nothing of the other past their common prefix.
    assert hashes in (
        [e.hash for e in mine[: len(stream)]],
        [e.hash for e in theirs[: len(stream)]],
    )
    mine_own = {event.hash for event in mine[fork - 1 :]}
    theirs_own = {event.hash for event in theirs[fork - 1 :]}
    assert not (mine_own & set(hashes)) or not (theirs_own & set(hashes))
    # Held events stay out of the global order, which follows seq order.
    assert [event.seq for event in store.read(Cursor.START, 100)] == [e.seq for e in stream]
    assert store.count_events() == len(stream)
    # A refusal is final: no event refused so far is stored.
    refused = {orjson.loads(letter.raw)["hash"] for letter in store.dead_letters(limit=1000)}
    assert not refused & set(hashes)
    # The heads reported are exactly the committed ones.
    head = store.head(DEVICE)
    assert head == (StreamHead(DEVICE, len(stream), hashes[-1]) if stream else None)
    assert result.heads == (() if head == head_before else (head,))
    return head


@settings(max_examples=300, deadline=None)
@given(fork=fork_strategy, arrivals=arrivals_strategy)
def test_any_arrivals_store_one_boards_linked_prefix_in_memory(
    fork: int, arrivals: list[Arrival]
) -> None:
    """Property (in memory): any arrivals of two boards' chains store a linked prefix
    of one of them, nothing of the other past their common prefix."""
    _check_custody(_memory_store, fork, arrivals)


@settings(max_examples=25, deadline=None)
@given(fork=fork_strategy, arrivals=arrivals_strategy)
def test_any_arrivals_store_one_boards_linked_prefix_on_sqlite(
    fork: int, arrivals: list[Arrival]
) -> None:
    """Property (SQLite): the same, through the SQL adapter's held table and queries."""
    _check_custody(_sqlite_store, fork, arrivals)
