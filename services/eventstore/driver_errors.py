"""Turns a database driver's exceptions into the store's own, at the adapter's edge."""

from contextlib import ContextDecorator
from types import TracebackType

from services.eventstore.errors import StoreRefusedValueError, StoreUnavailableError


class DriverErrors(ContextDecorator):
    """A context manager (and method decorator) that re-raises one driver's errors as
    ``StoreRefusedValueError`` (``refused``: the value itself was the problem) or
    ``StoreUnavailableError`` (any other ``failed``), chained to the original.

    Anything not about refused values counts as unavailable: a caller may retry it,
    whereas a wrongly refused value would be set aside and lost.
    """

    def __init__(
        self,
        refused: tuple[type[Exception], ...],
        failed: type[Exception] | tuple[type[Exception], ...],
    ) -> None:
        self._refused = refused
        self._failed = failed

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, self._refused):
            raise StoreRefusedValueError(
                f"the database refused a value: {_describe(error)}"
            ) from error
        if isinstance(error, self._failed):
            raise StoreUnavailableError(
                f"the database is unavailable: {_describe(error)}"
            ) from error


def _describe(error: BaseException) -> str:
    """The driver's class and the first line of its message: drivers add hints and
    context lines that do not belong in a log line."""
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else "no message"
    return f"{type(error).__name__}: {first_line}"
