"""What every server a test starts has in common: it lives in a scratch directory,
``with`` starts it, and leaving the block stops it and removes the directory, also
when starting failed halfway."""

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class ScratchServer(ABC):
    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory (safe to call twice)."""

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()
