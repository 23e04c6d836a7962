"""How the link cuts batches: a batch short of full waits briefly for company when
events trickle in, but the end of a backlog goes at once behind the full batches."""

from datetime import UTC, datetime
from pathlib import Path

import orjson

from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from tests.support.streams import punch_data
from tests.unit.test_link_delivery import DEVICE, EVENTS, FakeSession
from transport import BrokerAddress


def _record(outbox: Outbox, count: int) -> None:
    first = outbox.head(DEVICE)[0] + 1
    outbox.record_many(
        DEVICE,
        [DeviceReading("cores.punched", datetime.now(UTC), punch_data(n))
         for n in range(first, first + count)],
    )  # fmt: skip


def _batches(session: FakeSession) -> list[list[int]]:
    return [[e["seq"] for e in orjson.loads(p)["events"]] for p, _ in session.on(EVENTS)]


def test_the_end_of_a_backlog_goes_at_once_and_a_trickle_lingers(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.anchor(DEVICE)
    _record(outbox, 25)
    settings = LinkSettings(max_batch_events=10, linger_s=0.05)
    link = DeviceLink(DEVICE, outbox, BrokerAddress.parse("mqtt://127.0.0.1:1"), settings)
    session = FakeSession()
    link.mqtt = session
    session.connected = True
    link.on_connected(1)
    link.tick(100.0)
    assert _batches(session) == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    for _, mid in session.on(EVENTS):
        link.on_published(mid, None)
    _record(outbox, 3)
    link.notify_recorded()
    link.tick(100.01)
    assert len(_batches(session)) == 3  # a short batch after a short one waits
    link.tick(100.07)
    assert _batches(session)[3:] == [[26, 27, 28]]
