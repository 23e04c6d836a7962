"""The gateway's ingest core without a broker: a fake source feeds it, the in-memory
store holds what it commits, and every branch of retry and poison isolation is driven."""

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import count

import orjson
import pytest

from gateway.ingest import IngestCore, IngestOptions, decode
from schemas import (
    GENESIS_HASH,
    DeviceChannel,
    PlatformAck,
    RejectionReason,
    ResendCommand,
    SealedEvent,
    device_topic,
)
from schemas.streams import device_stream as stream_of
from services.eventstore import (
    AppendResult,
    DeadLetter,
    EventStore,
    InMemoryEventStore,
    StoreRefusedValueError,
    StoreUnavailableError,
    StreamSeal,
)
from tests.support.streams import device_stream
from transport import Backoff, Message

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
_mids = count(1)


def _message(device_id: str, events: Sequence[SealedEvent], *, connection: int = 1) -> Message:
    payload = orjson.dumps(
        {"device_id": device_id, "events": [orjson.loads(e.wire_json()) for e in events]}
    )
    return _raw(device_topic(device_id, DeviceChannel.EVENTS), payload, connection=connection)


def _raw(topic: str, payload: bytes, *, connection: int = 1) -> Message:
    return Message(topic, payload, 1, False, next(_mids), connection, NOW)


class FakeSource:
    """The source port: hands out queued messages, records acks and commands."""

    def __init__(self, messages: Sequence[Message] = ()) -> None:
        self.queued = list(messages)
        self.acknowledged: list[Message] = []
        self.commands: list[tuple[str, ResendCommand]] = []
        self.acks: list[tuple[str, PlatformAck]] = []

    def take(self, max_messages: int, linger_s: float, timeout_s: float) -> list[Message]:
        taken, self.queued = self.queued[:max_messages], self.queued[max_messages:]
        return taken

    def acknowledge(self, messages: Sequence[Message]) -> None:
        self.acknowledged.extend(messages)

    def send_command(self, device_id: str, command: ResendCommand) -> None:
        self.commands.append((device_id, command))

    def send_ack(self, device_id: str, ack: PlatformAck) -> None:
        self.acks.append((device_id, ack))


class FlakyStore(InMemoryEventStore):
    """Unavailable for the first ``outages`` appends; refuses any batch holding an
    event of ``poison_device`` (as a database refuses a value it cannot take)."""

    def __init__(self, outages: int = 0, poison_device: str | None = None) -> None:
        super().__init__()
        self.outages = outages
        self.poison_device = poison_device
        self.appends = 0

    def append(
        self,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter] = (),
        *,
        received_at: datetime | None = None,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        self.appends += 1
        if self.outages:
            self.outages -= 1
            raise StoreUnavailableError("connection refused")
        if any(event.device_id == self.poison_device for event in events):
            raise StoreRefusedValueError("value out of range\nsecond line")
        return super().append(events, dead_letters, received_at=received_at, seals=seals)


def _core(
    store: EventStore,
    source: FakeSource,
    clock: Callable[[], float] | None = None,
    *,
    gap_grace_s: float = 30.0,
    gap_retry_every_s: float = 60.0,
) -> IngestCore:
    return IngestCore(
        lambda: store,
        source,
        IngestOptions(gap_grace_s=gap_grace_s, gap_retry_every_s=gap_retry_every_s),
        clock=clock or (lambda: 0.0),
        store_backoff=Backoff(base_s=0.001, cap_s=0.01),
    )


def _run(core: IngestCore) -> None:
    stop = threading.Event()
    while (batch := core.collect(timeout_s=0)).messages:
        core.commit(batch, stop)


def test_a_batch_is_stored_then_acknowledged() -> None:
    """Events reach the store and every message is acknowledged after the commit."""
    store = InMemoryEventStore()
    messages = [_message("HP-000001", device_stream("HP-000001", 5))]
    source = FakeSource(messages)
    _run(_core(store, source))
    assert [e.seq for e in store.read_stream(stream_of("HP-000001"))] == [1, 2, 3, 4, 5]
    assert source.acknowledged == messages


def test_bad_input_is_dead_lettered_and_the_rest_stored() -> None:
    """A malformed message becomes a dead letter; the good ones beside it are stored;
    both are acknowledged."""
    store = InMemoryEventStore()
    good = _message("HP-000002", device_stream("HP-000002", 3))
    bad = _raw(device_topic("HP-000002", DeviceChannel.EVENTS), b"{not json")
    source = FakeSource([bad, good])
    _run(_core(store, source))
    assert len(store.read_stream(stream_of("HP-000002"))) == 3
    (letter,) = store.dead_letters()
    assert letter.reason == RejectionReason.MALFORMED.value
    assert source.acknowledged == [bad, good]


def test_an_unavailable_store_is_waited_out_and_nothing_acknowledged_meanwhile() -> None:
    """While the store is away the batch is retried, and only acknowledged once stored."""
    store = FlakyStore(outages=2)
    message = _message("HP-000003", device_stream("HP-000003", 4))
    source = FakeSource([message])
    core = _core(store, source)
    _run(core)
    assert store.appends == 3
    assert source.acknowledged == [message]
    assert len(store.read_stream(stream_of("HP-000003"))) == 4


def test_stopping_during_an_outage_acknowledges_nothing() -> None:
    """A gateway stopped while the store is away leaves its messages unacknowledged,
    for the broker to redeliver."""
    store = FlakyStore(outages=10**6)
    source = FakeSource([_message("HP-000004", device_stream("HP-000004", 2))])
    core = _core(store, source)
    stop = threading.Event()
    batch = core.collect(timeout_s=0)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    core.commit(batch, stop)
    timer.join()
    assert source.acknowledged == []
    assert store.count_events() == 0


def test_a_lone_poisonous_message_is_dead_lettered_with_the_stores_reason() -> None:
    """A single message the store refuses is dead-lettered whole with the first line
    of the store's reason, and acknowledged."""
    store = FlakyStore(poison_device="HP-000666")
    message = _message("HP-000666", device_stream("HP-000666", 2))
    source = FakeSource([message])
    _run(_core(store, source))
    (letter,) = store.dead_letters()
    assert letter.reason == RejectionReason.SCHEMA.value
    assert letter.detail == "the store refused it: value out of range"
    assert letter.raw == message.payload
    assert letter.device_id == "HP-000666"
    assert source.acknowledged == [message]


def test_halving_isolates_the_poison_and_stores_every_other_message() -> None:
    """In a batch of many, halving narrows the refusal down to the poisonous message:
    it alone is dead-lettered, every other device's events are stored, all acknowledged."""
    store = FlakyStore(poison_device="HP-000666")
    healthy = [f"HP-0001{n:02d}" for n in range(7)]
    messages = [_message(device, device_stream(device, 3)) for device in healthy]
    messages.insert(5, _message("HP-000666", device_stream("HP-000666", 3)))
    source = FakeSource(messages)
    _run(_core(store, source))
    for device in healthy:
        assert len(store.read_stream(stream_of(device))) == 3
    assert [letter.device_id for letter in store.dead_letters()] == ["HP-000666"]
    assert sorted(m.mid for m in source.acknowledged) == sorted(m.mid for m in messages)


def test_isolation_survives_an_outage_in_the_middle() -> None:
    """A store that goes away while a poisonous batch is being halved is waited out;
    isolation then goes on and loses nothing."""
    store = FlakyStore(poison_device="HP-000666")
    messages = [_message("HP-000201", device_stream("HP-000201", 2))]
    messages.append(_message("HP-000666", device_stream("HP-000666", 2)))
    source = FakeSource(messages)
    core = _core(store, source)
    stop = threading.Event()
    batch = core.collect(timeout_s=0)
    original_append = store.append

    def refuse_then_fail_once(*args: object, **kwargs: object) -> AppendResult:
        store.append = original_append  # type: ignore[method-assign]
        try:
            return original_append(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            store.outages = 1  # the store goes away right after refusing the batch

    store.append = refuse_then_fail_once  # type: ignore[method-assign]
    core.commit(batch, stop)
    assert len(store.read_stream(stream_of("HP-000201"))) == 2
    assert [letter.device_id for letter in store.dead_letters()] == ["HP-000666"]
    assert len(source.acknowledged) == 2


def test_a_gap_is_asked_for_with_a_schema_built_resend_command() -> None:
    """A hole in a stream that outlasts the grace period gets a resend command, a
    ``ResendCommand`` value naming exactly the missing seqs."""
    now = [0.0]
    store = InMemoryEventStore()
    stream = device_stream("HP-000005", 10)
    source = FakeSource([_message("HP-000005", stream[:3]), _message("HP-000005", stream[6:])])
    core = _core(store, source, clock=lambda: now[0], gap_grace_s=5, gap_retry_every_s=5)
    _run(core)
    core.request_missing_events()
    assert source.commands == []  # within the grace period
    now[0] = 6.0
    core.request_missing_events()
    assert source.commands == [
        ("HP-000005", ResendCommand(cmd="resend", from_seq=4, to_seq=6)),
    ]
    wire = orjson.loads(source.commands[0][1].model_dump_json())
    assert wire == {"cmd": "resend", "from_seq": 4, "to_seq": 6}


@pytest.mark.parametrize("filled", [True, False])
def test_a_filled_gap_is_not_asked_for(filled: bool) -> None:
    """Once the missing events arrive, no resend is sent; while they are missing, one is."""
    now = [0.0]
    store = InMemoryEventStore()
    stream = device_stream("HP-000006", 6)
    batches = [_message("HP-000006", stream[:2]), _message("HP-000006", stream[4:])]
    if filled:
        batches.append(_message("HP-000006", stream[2:4]))
    source = FakeSource(batches)
    core = _core(store, source, clock=lambda: now[0], gap_grace_s=1)
    _run(core)
    now[0] = 2.0
    core.request_missing_events()
    assert bool(source.commands) is not filled


def _status(device_id: str, last_seq: int | None = None, last_hash: str | None = None) -> Message:
    status: dict[str, object] = {"state": "online"}
    if last_seq is not None:
        status |= {"last_seq": last_seq, "last_hash": last_hash}
    return _raw(device_topic(device_id, DeviceChannel.STATUS), orjson.dumps(status))


def test_a_commit_is_acknowledged_to_the_device_with_its_stored_head() -> None:
    """After the commit, the device's acks topic gets its contiguous stored head and hash."""
    store = InMemoryEventStore()
    stream = device_stream("HP-000010", 6)
    source = FakeSource([_message("HP-000010", stream)])
    core = _core(store, source)
    _run(core)
    core.publish_acks()
    assert source.acks == [("HP-000010", PlatformAck(stored_through=6, hash=stream[-1].hash))]


def test_acks_are_coalesced_per_device() -> None:
    """Heads that move within the interval go out as one ack, the newest, when it ends."""
    now = [0.0]
    store = InMemoryEventStore()
    stream = device_stream("HP-000011", 9)
    source = FakeSource()
    core = _core(store, source, clock=lambda: now[0])
    stop = threading.Event()
    for part in (stream[:3], stream[3:6], stream[6:]):
        core.commit(decode([_message("HP-000011", part)]), stop)
        core.publish_acks()
        now[0] += 0.3
    assert [ack.stored_through for _, ack in source.acks] == [3]
    now[0] += 1.0
    core.publish_acks()
    assert [ack.stored_through for _, ack in source.acks] == [3, 9]
    assert source.acks[-1][1].hash == stream[-1].hash


def test_held_events_are_not_acknowledged() -> None:
    """Events past a hole are not covered by an ack: it names the contiguous head only."""
    store = InMemoryEventStore()
    stream = device_stream("HP-000012", 8)
    source = FakeSource([_message("HP-000012", stream[:2]), _message("HP-000012", stream[4:])])
    core = _core(store, source)
    _run(core)
    core.publish_acks()
    assert source.acks == [("HP-000012", PlatformAck(stored_through=2, hash=stream[1].hash))]


def test_a_device_coming_online_is_told_its_head_and_asked_for_its_tail() -> None:
    """An online status gets the stored head at once, and a device ahead of it is asked
    for stored_through + 1 .. its own head without waiting for a later event."""
    store = InMemoryEventStore()
    stream = device_stream("HP-000013", 10)
    source = FakeSource([_message("HP-000013", stream[:4])])
    core = _core(store, source)
    _run(core)
    core.publish_acks()
    source.acks.clear()
    source.queued = [_status("HP-000013", 10, stream[-1].hash)]
    _run(core)
    core.publish_acks()
    assert source.acks == [("HP-000013", PlatformAck(stored_through=4, hash=stream[3].hash))]
    assert source.commands == [("HP-000013", ResendCommand(cmd="resend", from_seq=5, to_seq=10))]


def test_a_device_unknown_to_the_platform_is_told_nothing_is_stored() -> None:
    """A device with no stored events gets stored_through 0 with the zero hash, so a
    fresh agent anchors its chain at once; a v1 status asks for no tail."""
    store = InMemoryEventStore()
    source = FakeSource([_status("HP-000014"), _status("HP-000015", 0, GENESIS_HASH)])
    core = _core(store, source)
    _run(core)
    core.publish_acks()
    assert sorted(source.acks) == [
        ("HP-000014", PlatformAck(stored_through=0, hash=GENESIS_HASH)),
        ("HP-000015", PlatformAck(stored_through=0, hash=GENESIS_HASH)),
    ]
    assert source.commands == []
