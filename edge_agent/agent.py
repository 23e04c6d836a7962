"""The device port of one handpiece: what its firmware (or the simulator) calls."""

import uuid

from pydantic import ValidationError

from edge_agent.control import load_settings
from edge_agent.device import DeviceReading
from edge_agent.interlock_keeping import keep_state, restore_interlocks
from edge_agent.interlock_state import InterlockState
from edge_agent.interlocks import Interlocks, Verdict
from edge_agent.outbox import InvalidReadingError, Outbox
from edge_agent.publisher import DeviceLink
from schemas import (
    DEVICE_EVENT_ADAPTER,
    DEVICE_EVENT_TYPES,
    GENESIS_HASH,
    Heartbeat,
    describe,
    utc_text,
)


class Agent:
    """Events pass the handpiece's interlocks, then go to the durable outbox, and so
    into the chain, before ``report`` returns; heartbeats go straight to the link
    (QoS 0, dropped while offline)."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        link: DeviceLink,
        interlocks: Interlocks | None = None,
    ) -> None:
        self.device_id = device_id
        self.outbox = outbox
        self.link = link
        self.interlocks = interlocks or restore_interlocks(
            outbox, device_id, load_settings(outbox, device_id)
        )
        """What the handpiece enforces; its configuration and the interlock commands
        reach it through ``edge_agent.control``."""

    def report(self, reading: DeviceReading) -> Verdict:
        """Record ``reading`` unless an interlock refuses it, with the interlock events
        the decision recorded; the verdict tells the firmware whether to go on.

        Raises ``InvalidReadingError`` for a reading the platform would refuse: the
        interlocks decide only on valid events, and account only for what was
        recorded (their state is put back if recording fails)."""
        _check(self.device_id, reading, self.outbox.head(self.device_id)[0] + 1)
        before = self.interlocks.state.to_json()
        try:
            verdict = self.interlocks.admit(reading)
            if verdict.readings:
                state = self.interlocks.state.to_json()
                self.outbox.record_noting(
                    self.device_id,
                    verdict.readings,
                    lambda connection: keep_state(connection, self.device_id, state),
                )
        except BaseException:
            self.interlocks.state = InterlockState.from_json(before)
            raise
        if verdict.readings:
            self.link.notify_recorded()
        return verdict

    def heartbeat(self, sample: Heartbeat) -> None:
        self.link.send_heartbeat(sample)


def _check(device_id: str, reading: DeviceReading, seq: int) -> None:
    """Refuse what the outbox would refuse (in its words), before the interlocks take
    the reading into account."""
    if reading.type not in DEVICE_EVENT_TYPES:
        raise InvalidReadingError(f"{reading.type!r} is not an event a device may send")
    try:
        DEVICE_EVENT_ADAPTER.validate_python({
            "event_id": str(uuid.UUID(int=0)), "device_id": device_id, "seq": 1,
            "type": reading.type, "occurred_at": utc_text(reading.occurred_at),
            "schema_version": 1, "data": dict(reading.data),
            "prev_hash": GENESIS_HASH, "hash": GENESIS_HASH,
        })  # fmt: skip
    except ValidationError as error:
        where = describe(error, skip=1)
        raise InvalidReadingError(f"{reading.type} (would be seq {seq}): {where}") from None
