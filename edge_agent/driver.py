"""One thread drives any number of device links: their sockets (one selector, from
``transport``), the outbox's disk budget, and each link's state machine."""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink
from transport import SocketMultiplexer

_LIMITS_EVERY_S: Final = 60.0
_HANG_UP_S: Final = 0.25
_TICKING_S: Final = 0.2
"""The most one turn spends advancing links before it lets its caller run: a fleet
of thousands connecting at once (each connect is a blocking TCP handshake) took
many seconds in one turn, past the end of a timed run."""


class LinkDriver(SocketMultiplexer):
    """Drives ``DeviceLink`` state machines and their sockets on the calling thread."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox
        self.links: list[DeviceLink] = []
        self._limits_due = 0.0
        self._next_link = 0

    def add(self, link: DeviceLink) -> None:
        self.links.append(link)

    def turn(self, timeout: float = 0.01) -> None:
        """One pass: move bytes on every ready socket, then advance the links, round
        robin, for at most ``_TICKING_S`` (usually all of them)."""
        now = self.pump(timeout)
        if now >= self._limits_due:
            self._outbox.enforce_limits([link.device_id for link in self.links])
            self._limits_due = now + _LIMITS_EVERY_S
        count = len(self.links)
        for step in range(count):
            self.links[(self._next_link + step) % count].tick(now)
            if time.monotonic() - now >= _TICKING_S:
                self._next_link = (self._next_link + step + 1) % count
                return

    def run(
        self,
        stop: threading.Event,
        between_turns: Callable[[], None] | None = None,
        timeout: float = 0.01,
        goodbye_s: float = 2.0,
    ) -> None:
        """Turn until ``stop`` is set, calling ``between_turns`` (a simulator, say) on
        this thread, so the outbox connection is only ever used from here; then say
        goodbye, within ``goodbye_s``."""
        while not stop.is_set():
            self.turn(timeout)
            if between_turns is not None:
                between_turns()
        self.close_links(flush_s=goodbye_s)

    def close_links(self, links: Sequence[DeviceLink] | None = None, flush_s: float = 2.0) -> None:
        """Say goodbye on every link at once, then close the selector.

        All links publish their retained offline status together and the selector
        carries every answer, so a fleet of thousands says goodbye in about one
        round trip: within ``flush_s``, plus a moment to hang up.  (One link at a
        time, each waiting for its own PUBACK, took minutes for 5,000 links, while
        the others' keep-alives lapsed.)  Every socket is closed before the
        selector, so no socket callback comes after it.
        """
        chosen = list(links or self.links)
        for link in chosen:
            link.say_offline()
        self._pump_while(lambda: any(link.saying_offline for link in chosen), flush_s)
        for link in chosen:
            link.hang_up()
        self._pump_while(lambda: self.watching > 0, _HANG_UP_S)
        self.close()

    def _pump_while(self, condition: Callable[[], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while condition() and time.monotonic() < deadline:
            self.pump(0.01)
