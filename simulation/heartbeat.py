"""A simulated handpiece's heartbeats: battery, temperature, uptime and signal strength,
sampled on a fixed interval.

The story tells the source what the handpiece is doing (in a session, overheated, when
it booted); the source never changes the story.  Its samples draw from their own
generator, so tuning heartbeats never changes a device's events.
"""

import random
from typing import Final

from schemas import Heartbeat
from simulation.clock import MS_PER_HOUR, SimulatedClock
from simulation.draws import draw_int

_BATTERY_DRAIN_PCT_PER_HOUR: Final = 35.0
_BATTERY_CHARGE_PCT_PER_HOUR: Final = 60.0
_OVERHEATED_C: Final = 54.0


class HeartbeatSource:
    """The heartbeats of one handpiece; ``take_due`` hands out the next one."""

    def __init__(
        self,
        device_id: str,
        clock: SimulatedClock,
        interval_s: float,
        story_rng: random.Random,
        telemetry_seed: int,
    ) -> None:
        """The first heartbeat and the handpiece's starting condition come from the
        story's generator (in this order); every sample after from its own."""
        self._device_id = device_id
        self._clock = clock
        self._interval_ms = max(1, round(interval_s * 1000))
        self._rng = random.Random(telemetry_seed)  # noqa: S311 - reproducible, not secret
        self.next_due_ms = draw_int(story_rng, 1_000, max(1_000, self._interval_ms))
        self._ambient_c = story_rng.uniform(21.0, 26.0)
        self._temperature_c = self._ambient_c + 1.0
        self._battery_pct = story_rng.uniform(60.0, 100.0)
        self._rssi_base_dbm = story_rng.uniform(-82.0, -48.0)
        self.booted_ms = 0
        self.in_session = False
        self.overheated = False

    def take_due(self) -> tuple[int, Heartbeat]:
        """The heartbeat due at ``next_due_ms``; the one after falls due an interval on."""
        due = self.next_due_ms
        self.next_due_ms += self._interval_ms
        return due, self._sample(due)

    def _sample(self, moment: int) -> Heartbeat:
        rng = self._rng
        hours = self._interval_ms / MS_PER_HOUR
        # Sessions run on battery; between them the handpiece sits in its charging dock.
        if self.in_session:
            self._battery_pct = max(0.0, self._battery_pct - _BATTERY_DRAIN_PCT_PER_HOUR * hours)
            target_c = self._ambient_c + 11.0
        else:
            charged = self._battery_pct + _BATTERY_CHARGE_PCT_PER_HOUR * hours
            self._battery_pct = min(100.0, charged)
            target_c = self._ambient_c + 1.5
        if self.overheated:
            target_c = _OVERHEATED_C
        self._temperature_c += (target_c - self._temperature_c) * 0.3 + rng.gauss(0.0, 0.15)
        rssi = min(-30.0, max(-120.0, self._rssi_base_dbm + rng.gauss(0.0, 2.5)))
        return Heartbeat.model_validate(
            {
                "device_id": self._device_id,
                "sampled_at": self._clock.text(moment),
                "battery_pct": round(self._battery_pct, 1),
                "temperature_c": round(self._temperature_c, 1),
                "uptime_s": max(0, (moment - self.booted_ms) // 1000),
                "rssi_dbm": round(rssi, 1),
            }
        )
