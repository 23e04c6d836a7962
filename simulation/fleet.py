"""``coreline simulate``: many simulated handpieces, each a real agent on the wire.

Every device has its own simulator, chain, MQTT client and session, exactly as if
it were a separate handpiece; they share one process, one thread, one selector and
one outbox file, so a thousand of them fit in a laptop.  Simulated time runs
``speed`` times faster than the wall clock, from the moment the run starts.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from edge_agent.control import DeviceControl
from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import Heartbeat
from simulation.device_keys import simulated_key
from simulation.handpiece import HandpieceSimulator
from simulation.profile import SimulatorProfile
from transport import BrokerAddress

_STEP_EVERY_S: Final = 0.05
"""How often simulated time is advanced and its events recorded (one transaction
for the whole fleet each time)."""
_DRAIN_S: Final = 0.5
"""How long past its duration a run goes on publishing what is left unsent; the
goodbye after it takes at most ``_GOODBYE_S``, so a run ends within about two
seconds of its duration, however large the fleet."""
_GOODBYE_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class FleetProgress:
    simulated_until: datetime
    recorded: int
    unsent: int
    connected: int
    devices: int


@dataclass(frozen=True, slots=True)
class FleetPlan:
    device_ids: list[str]
    seed: int
    speed: float = 1.0
    """Simulated seconds per wall-clock second."""
    profile: SimulatorProfile = field(default_factory=SimulatorProfile)
    start: datetime | None = None
    """Simulated time at the start of the run; the wall clock's now by default."""
    sealed: bool = True
    """Whether each device seals its batches with its key (``simulated_key``)."""


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class FleetSimulation:
    def __init__(
        self,
        plan: FleetPlan,
        outbox: Outbox,
        broker: BrokerAddress,
        settings: LinkSettings | None = None,
    ) -> None:
        self.outbox = outbox
        self.speed = plan.speed
        self.start = plan.start or datetime.now(UTC)
        self.driver = LinkDriver(outbox)
        device_ids = plan.device_ids
        self.simulators = [
            HandpieceSimulator(device_id, plan.seed, self.start, plan.profile)
            for device_id in device_ids
        ]
        self.links = {
            device_id: DeviceLink(
                device_id,
                outbox,
                broker,
                settings,
                watcher=self.driver,
                sealer=simulated_key(plan.seed, device_id) if plan.sealed else None,
            )
            for device_id in device_ids
        }
        for simulator in self.simulators:
            # Configuration and commands, in simulated time like the story, reaching
            # the same interlocks the simulated handpiece's readings pass.
            link = self.links[simulator.device_id]
            link.control = DeviceControl(
                simulator.device_id, outbox, interlocks=simulator.interlocks,
                clock=self.simulated_now, expiry_clock=_wall_clock,
            )  # fmt: skip
            self.driver.add(link)
        self.recorded = 0
        self._wall_start = time.monotonic()
        self._next_step = 0.0

    def simulated_now(self) -> datetime:
        elapsed = time.monotonic() - self._wall_start
        return self.start + timedelta(seconds=elapsed * self.speed)

    def step(self) -> None:
        """Advance every simulator to the simulated present and record what happened."""
        now = time.monotonic()
        if now < self._next_step:
            return
        self._next_step = now + _STEP_EVERY_S
        until = self.simulated_now()
        readings: dict[str, list[DeviceReading]] = {}
        for simulator in self.simulators:
            happened = simulator.advance(until)
            if not happened:
                continue
            link = self.links[simulator.device_id]
            events = []
            for item in happened:
                if isinstance(item, Heartbeat):
                    link.send_heartbeat(item)
                else:
                    events.append(item)
            if events:
                readings[simulator.device_id] = events
        if readings:
            self.outbox.record_fleet(readings)
            for device_id, events in readings.items():
                link = self.links[device_id]
                link.notify_recorded()
                if link.control is not None:
                    for event in events:
                        link.control.saw(event)
                self.recorded += len(events)

    def progress(self) -> FleetProgress:
        return FleetProgress(
            simulated_until=self.simulated_now(),
            recorded=self.recorded,
            unsent=self.outbox.stats().unsent,
            connected=sum(link.connected for link in self.links.values()),
            devices=len(self.links),
        )

    def run(
        self,
        stop: threading.Event,
        duration_s: float | None = None,
        on_progress: Callable[[FleetProgress], None] | None = None,
        progress_every_s: float = 5.0,
    ) -> FleetProgress:
        """Simulate and publish until ``stop`` is set or ``duration_s`` of wall time
        has passed; then stop recording and drain what is unsent for a moment (what
        is left stays in the outbox for the next run)."""
        deadline = None if duration_s is None else self._wall_start + duration_s
        next_report = time.monotonic() + progress_every_s

        def between_turns() -> None:
            nonlocal next_report
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                # Asked of the links, not the outbox: a count over every stored event
                # on each turn of the drain cost more than the drain itself.
                if now >= deadline + _DRAIN_S or not any(
                    link.sending for link in self.links.values()
                ):
                    stop.set()
                return
            self.step()
            if on_progress is not None and now >= next_report:
                on_progress(self.progress())
                next_report = now + progress_every_s

        self.driver.run(stop, between_turns=between_turns, goodbye_s=_GOODBYE_S)
        return self.progress()
