"""One thread, one selector, any number of device links.

Paho's external-loop interface tells us when each client's socket opens, closes,
and has bytes to write; the driver keeps those sockets in one selector, so a
thousand simulated handpieces cost one ``select`` per turn instead of a thousand
threads.  A real agent uses the same driver with one link.
"""

import selectors
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink

_MISC_EVERY_S: Final = 1.0
"""Paho's housekeeping (keep-alive pings, lost-connection detection)."""
_LIMITS_EVERY_S: Final = 60.0
_READ_PACKETS: Final = 64


class LinkDriver:
    """Drives ``DeviceLink`` state machines and their sockets on the calling thread."""

    def __init__(self, outbox: Outbox) -> None:
        self._selector = selectors.DefaultSelector()
        self._outbox = outbox
        self.links: list[DeviceLink] = []
        self._misc_due = 0.0
        self._limits_due = 0.0

    # -- SocketWatcher -----------------------------------------------------

    def opened(self, link: DeviceLink, sock: Any) -> None:
        self._selector.register(sock, selectors.EVENT_READ, link)

    def closed(self, link: DeviceLink, sock: Any) -> None:
        if sock in self._selector.get_map():
            self._selector.unregister(sock)

    def want_write(self, link: DeviceLink, sock: Any, *, wanted: bool) -> None:
        if sock not in self._selector.get_map():
            return  # paho asks before on_socket_open during connect
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        self._selector.modify(sock, events, link)

    # -- driving -----------------------------------------------------------

    def add(self, link: DeviceLink) -> None:
        self.links.append(link)

    def turn(self, timeout: float = 0.01) -> None:
        """One pass: move bytes on every ready socket, then advance every link."""
        for key, mask in self._selector.select(timeout):
            link: DeviceLink = key.data
            if mask & selectors.EVENT_READ:
                link.client.loop_read(_READ_PACKETS)
            if mask & selectors.EVENT_WRITE:
                link.client.loop_write()
        now = time.monotonic()
        if now >= self._misc_due:
            for link in self.links:
                link.client.loop_misc()
            self._misc_due = now + _MISC_EVERY_S
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
        self.close()

    def close(self, links: Sequence[DeviceLink] | None = None) -> None:
        for link in links or self.links:
            link.close()
        self._selector.close()
