"""``run_config_delivery``: the loop that delivers desired configuration and tracked
commands, a thread of ``coreline projector`` beside the projector and the notifier.

Its own follower of the store (checkpoint ``config-delivery``), not a part of the
projector's fold: what it does after each commit is publish over MQTT, which the
projector's folds must never do (DESIGN: projections never import MQTT), and its
state (layers, versions, commands) is small and its own.  Each turn it:

1. reads the events after its checkpoint and folds the ones it cares about
   (``ConfigBook``), committing the changed rows with the checkpoint;
2. publishes, after that commit, each device's new desired configuration
   (retained) and each newly issued command;
3. once caught up, records ``command.expired`` for every pending command past its
   expiry, and publishes a device's pending commands again when it comes back
   online (a device that starts afresh has no broker session that kept them; it
   ignores a command id it already answered).

A crash between the commit and the publish loses nothing: on start-up every
desired configuration and every pending command is published again (idempotent:
configurations are retained and versioned, commands carry their id).
"""

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from schemas import GENESIS_HASH, SealedEvent, seal, utc_text
from schemas.device_config import CommandMessage, ConfigMessage
from schemas.streams import command_stream
from services.config_delivery.book import (
    FOLDED_TYPES,
    Command,
    CommandState,
    ConfigBook,
    DeviceConfig,
    Folded,
)
from services.config_delivery.database import open_engine
from services.config_delivery.publisher import DeliveryPublisher
from services.config_delivery.saved import load_book, save
from services.eventstore import (
    EventStore,
    EventStoreError,
    StoredEvent,
    load_checkpoint,
    open_event_store,
)
from transport import BrokerAddress

log = logging.getLogger(__name__)

CHECKPOINT: Final = "config-delivery"
_BATCH: Final = 5000
_TICK_EVERY_S: Final = 1.0
_RETRY_S: Final = 2.0
GATHER_S: Final = 0.25
"""After a turn that passed only events it does not fold, how long the next turn
waits: woken by every append under load, the loop spent 25–30 µs of CPU an event on
turns that folded nothing, in the process whose interpreter lock the projector's
loop shares.  A configuration or command appended meanwhile waits at most this."""


class ConfigDelivery:
    def __init__(
        self,
        events: EventStore,
        engine: Engine,
        publisher: DeliveryPublisher | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.events = events
        self.engine = engine
        self.publisher = publisher
        self.clock = clock
        with engine.connect() as connection:
            self.book: ConfigBook = load_book(connection)
        self._sent_at: dict[str, datetime] = {}
        """When each device's pending commands were last published."""
        self._expiring: set[str] = set()

    # -- folding --------------------------------------------------------------

    def step(self) -> int:
        """Fold the next batch and publish what it changed; how many events it folded
        (at least 1 when it moved on past others; 0: caught up)."""
        moved, folded = self._turn()
        return max(folded, 1) if moved else 0

    def _turn(self) -> tuple[bool, int]:
        """``step``: whether the checkpoint moved, and how many events were folded."""
        with self.engine.connect() as connection:
            cursor = load_checkpoint(connection, CHECKPOINT)
        # Only the types the book folds leave the database: punches and heartbeats,
        # nearly all of what is stored, are passed over by the checkpoint unread.
        stored, through = self.events.read_matching(cursor, _BATCH, types=FOLDED_TYPES)
        if through == cursor:
            return False, 0
        changes = self.book.fold(_folded(event) for event in stored)
        with self.engine.begin() as connection:
            save(connection, self.book, changes, CHECKPOINT, through)
        for device_id in sorted(changes.republish):
            self._publish_config(self.book.devices[device_id])
        now = self.clock()
        for command in changes.issued:
            if command.state is CommandState.PENDING:
                self._publish_command(command, now)
        return True, len(stored)

    # -- publishing -------------------------------------------------------------

    def publish_everything(self) -> None:
        """Every desired configuration (and a cleared one for each decommissioned
        device) and every pending command: at start-up and after a reconnection."""
        for device in self.book.devices.values():
            if device.delivered or device.decommissioned:
                self._publish_config(device)
        now = self.clock()
        for command in list(self.book.open_commands.values()):
            if command.state is CommandState.PENDING:
                self._publish_command(command, now)

    def _publish_config(self, device: DeviceConfig) -> None:
        if self.publisher is None:
            return
        if device.decommissioned:
            self.publisher.publish_config(device.device_id, None)
        elif device.delivered and device.desired_settings is not None:
            message = ConfigMessage(
                device_id=device.device_id, version=device.desired_version,
                settings=device.desired_settings, digest=device.desired_digest or "",
            )  # fmt: skip
            self.publisher.publish_config(device.device_id, message)

    def _publish_command(self, command: Command, now: datetime) -> None:
        if self.publisher is None:
            return
        message = CommandMessage.model_validate(
            {"cmd": command.cmd, "command_id": command.command_id,
             "expires_at": command.expires_at, "issued_by": command.issued_by,
             "args": command.args}
        )  # fmt: skip
        self.publisher.publish_command(command.device_id, message, now)
        self._sent_at[command.device_id] = now

    # -- the clock ------------------------------------------------------------

    def tick(self) -> None:
        """Expire pending commands past their expiry; publish a returning device's
        pending commands again."""
        now = self.clock()
        pending = [
            command for command in self.book.open_commands.values()
            if command.state is CommandState.PENDING
        ]  # fmt: skip
        for command in pending:
            if _parse(command.expires_at) <= now and command.command_id not in self._expiring:
                self._record_expiry(command, now)
        self._expiring &= {command.command_id for command in pending}
        waiting = {
            command.device_id for command in pending if command.command_id not in self._expiring
        }
        if not waiting or self.publisher is None:
            return
        for device_id, presence in self.events.presence(sorted(waiting)).items():
            sent = self._sent_at.get(device_id)
            if presence.online and (sent is None or presence.changed_at > sent):
                for command in pending:
                    if command.device_id == device_id and _parse(command.expires_at) > now:
                        self._publish_command(command, now)

    def _record_expiry(self, command: Command, now: datetime) -> None:
        def build(head: StoredEvent | None) -> SealedEvent:
            seq, prev_hash = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
            moment = now if head is None or head.occurred_at <= now else head.occurred_at
            return seal(
                {
                    "event_id": str(uuid.uuid4()),
                    "device_id": command.device_id,
                    "seq": seq,
                    "type": "command.expired",
                    "occurred_at": utc_text(moment),
                    "schema_version": 1,
                    "data": {"command_id": command.command_id},
                    "prev_hash": prev_hash,
                },
                command_stream(command.device_id),
            )

        self.events.append_next(command_stream(command.device_id), build)
        self._expiring.add(command.command_id)

    # -- running ----------------------------------------------------------------

    def run(
        self, stop: threading.Event, idle_wait_s: float = 0.5, gather_s: float = GATHER_S
    ) -> None:
        next_tick = 0.0
        while not stop.is_set():
            if self.publisher is not None and self.publisher.take_reconnected():
                self.publish_everything()
            moved, folded = self._turn()
            if not moved and self.clock().timestamp() >= next_tick:
                self.tick()
                next_tick = self.clock().timestamp() + _TICK_EVERY_S
            if not moved:
                self.events.wait_for_appends(idle_wait_s)
            elif not folded:
                # Only others' events went by: let the next turn gather rather than
                # wake at every append (each turn is two reads and a commit).
                stop.wait(gather_s)


def run_config_delivery(
    database_url: str,
    broker: BrokerAddress | None,
    stop: threading.Event,
) -> None:
    """Deliver configurations and commands until ``stop`` is set (``broker=None``:
    fold and expire only)."""
    publisher = DeliveryPublisher(broker) if broker is not None else None
    if publisher is not None:
        publisher.start()
    try:
        while not stop.is_set():
            store = open_event_store(database_url)
            engine = open_engine(database_url)
            try:
                ConfigDelivery(store, engine, publisher).run(stop)
            except (EventStoreError, SQLAlchemyError):
                # The database is away: each batch commits whole, so start again
                # from the checkpoint shortly.
                log.exception("configuration delivery could not reach the database; retrying")
                stop.wait(_RETRY_S)
            finally:
                store.close()
                engine.dispose()
    finally:
        if publisher is not None:
            publisher.stop()


def _folded(event: StoredEvent) -> Folded:
    document = orjson.loads(event.body)
    return Folded(
        stream_id=event.stream_id,
        device_id=event.device_id,
        type=event.type,
        occurred_at=document["occurred_at"],
        data=document["data"],
    )


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
