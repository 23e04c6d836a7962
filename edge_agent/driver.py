"""One thread drives any number of device links: their sockets (one selector, from
``transport``), the outbox's disk budget, and each link's state machine."""

import threading
from collections.abc import Callable, Sequence
from typing import Final

from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink
from transport import SocketMultiplexer

_LIMITS_EVERY_S: Final = 60.0


class LinkDriver(SocketMultiplexer):
    """Drives ``DeviceLink`` state machines and their sockets on the calling thread."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox
        self.links: list[DeviceLink] = []
        self._limits_due = 0.0

    def add(self, link: DeviceLink) -> None:
        self.links.append(link)

    def turn(self, timeout: float = 0.01) -> None:
        """One pass: move bytes on every ready socket, then advance every link."""
        now = self.pump(timeout)
        if now >= self._limits_due:
            self._outbox.enforce_limits([link.device_id for link in self.links])
            self._limits_due = now + _LIMITS_EVERY_S
        for link in self.links:
            link.tick(now)

    def run(
        self,
        stop: threading.Event,
        between_turns: Callable[[], None] | None = None,
        timeout: float = 0.01,
    ) -> None:
        """Turn until ``stop`` is set, calling ``between_turns`` (a simulator, say) on
        this thread, so the outbox connection is only ever used from here."""
        while not stop.is_set():
            self.turn(timeout)
            if between_turns is not None:
                between_turns()
        self.close_links()

    def close_links(self, links: Sequence[DeviceLink] | None = None) -> None:
        for link in links or self.links:
            link.close()
        self.close()
