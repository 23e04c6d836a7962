"""Event-store connections for request handlers: one per request at a time, reused.

An ``EventStore`` is used by one thread at a time, and handlers run on a thread
pool, so each request borrows a store and gives it back.  A store whose call
failed is closed rather than returned: its connection may be the broken part.
"""

import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.eventstore import EventStore


class StorePool:
    def __init__(self, open_store: Callable[[], EventStore], keep: int = 8) -> None:
        self._open = open_store
        self._idle: queue.LifoQueue[EventStore] = queue.LifoQueue(maxsize=keep)

    @contextmanager
    def borrow(self) -> Iterator[EventStore]:
        try:
            store = self._idle.get_nowait()
        except queue.Empty:
            store = self._open()
        try:
            yield store
        except BaseException:
            store.close()
            raise
        try:
            self._idle.put_nowait(store)
        except queue.Full:
            store.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
