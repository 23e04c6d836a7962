"""One thread, one selector, any number of clients driven by ``MqttClient.tick``.

Paho's external-loop interface tells us when each client's socket opens, closes,
and has bytes to write; the multiplexer keeps those sockets in one selector, so a
thousand simulated handpieces cost one ``select`` per turn instead of a thousand
threads.  A real agent uses the same machinery with one client.
"""

import selectors
import time
from typing import Any, Final

from transport.client import MqttClient

_MISC_EVERY_S: Final = 1.0
"""Paho's housekeeping (keep-alive pings, lost-connection detection)."""
_READ_PACKETS: Final = 64
_PUMPING_S: Final = 0.1
"""The most one ``pump`` spends moving bytes: the sockets it did not get to are
still ready (the selector is level-triggered) and go first next time, so thousands
of busy sockets cannot hold up the caller's turn."""


class SocketMultiplexer:
    """Moves bytes for every client whose socket it watches; not thread-safe: all
    of its clients are driven from the thread that calls ``pump``."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._clients: list[MqttClient] = []
        self._misc_due = 0.0
        self._closed = False
        self._rotation = 0

    # -- SocketWatcher -----------------------------------------------------
    #
    # Paho may still call these once the selector is closed: a client that was not
    # hung up (or whose DISCONNECT could not be written in time) closes its socket
    # when it is garbage-collected, at the latest at interpreter exit.  A closed
    # selector's map is None, so testing membership raised an ignored TypeError
    # from paho's ``__del__`` on the way out; past ``close`` there is nothing to
    # watch, and the calls are ignored.

    def opened(self, client: MqttClient, sock: Any) -> None:
        if self._closed:
            return  # nothing turns this selector any more: the socket is paho's alone
        self._selector.register(sock, selectors.EVENT_READ, client)
        if client not in self._clients:
            self._clients.append(client)

    def closed(self, client: MqttClient, sock: Any) -> None:
        if not self._closed and sock in self._selector.get_map():
            self._selector.unregister(sock)

    def want_write(self, client: MqttClient, sock: Any, *, wanted: bool) -> None:
        if self._closed or sock not in self._selector.get_map():
            return  # paho asks before on_socket_open during connect
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        self._selector.modify(sock, events, client)

    @property
    def watching(self) -> int:
        """Sockets open in the selector."""
        return 0 if self._closed else len(self._selector.get_map())

    # -- driving -----------------------------------------------------------

    def pump(self, timeout: float = 0.01) -> float:
        """Move bytes on the ready sockets (waiting up to ``timeout`` for one), for at
        most ``_PUMPING_S``, and run paho's housekeeping when due; returns the time
        it finished."""
        started = time.monotonic()
        ready = self._selector.select(timeout)
        first = self._rotation % len(ready) if ready else 0
        for moved, (key, mask) in enumerate(ready[first:] + ready[:first], start=1):
            client: MqttClient = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read(_READ_PACKETS)
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
            if time.monotonic() - started >= _PUMPING_S:
                self._rotation = first + moved  # where the next pump starts
                break
        now = time.monotonic()
        if now >= self._misc_due:
            for client in self._clients:
                client.loop_misc()
            self._misc_due = now + _MISC_EVERY_S
        return now

    def close(self) -> None:
        self._closed = True
        self._selector.close()
