"""Platform acknowledgements (DESIGN §4.2): which stored heads to publish, and when.
Pure: time is passed in.

A device's ``acks`` topic tells it how far its stream is stored contiguously.  The
gateway learns each moved head from the commit that moved it and publishes it after
that commit, coalesced to at most one ack per device per interval (a busy device
moves its head on every batch; the newest head says everything the older ones did).
A head a device asks about by coming online goes out at once.
"""

from dataclasses import dataclass, field
from typing import Final

from schemas import PlatformAck

DEFAULT_INTERVAL_S: Final = 1.0


@dataclass(slots=True)
class AckCoalescer:
    interval_s: float = DEFAULT_INTERVAL_S
    _waiting: dict[str, PlatformAck] = field(default_factory=dict)
    _last_sent: dict[str, float] = field(default_factory=dict)

    def stored(self, device_id: str, ack: PlatformAck) -> None:
        """A commit moved ``device_id``'s head to ``ack``."""
        waiting = self._waiting.get(device_id)
        if waiting is None or ack.stored_through >= waiting.stored_through:
            self._waiting[device_id] = ack

    def now_due(self, device_id: str, ack: PlatformAck, now: float) -> PlatformAck:
        """Send ``ack`` at once (the device just came online): it supersedes what waited."""
        waiting = self._waiting.pop(device_id, None)
        self._last_sent[device_id] = now
        if waiting is not None and waiting.stored_through > ack.stored_through:
            return waiting
        return ack

    def due(self, now: float) -> list[tuple[str, PlatformAck]]:
        """Acks to publish now: each waiting one whose device's interval has passed."""
        ready = [
            device_id
            for device_id in self._waiting
            if now - self._last_sent.get(device_id, float("-inf")) >= self.interval_s
        ]
        for device_id in ready:
            self._last_sent[device_id] = now
        return [(device_id, self._waiting.pop(device_id)) for device_id in ready]

    def forget_idle(self, now: float, idle_s: float = 3600.0) -> None:
        """Drop the send times of devices quiet for ``idle_s`` (bounded memory)."""
        for device_id in [d for d, at in self._last_sent.items() if now - at > idle_s]:
            if device_id not in self._waiting:
                del self._last_sent[device_id]
