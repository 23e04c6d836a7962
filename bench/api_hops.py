"""What one hand-off to the thread pool and back costs, on asyncio's event loop and on
uvloop's: the CPU FastAPI spends each time it runs a synchronous dependency or
handler (``python -m bench.api_hops``)."""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
import uvloop

from bench.report import machine, print_table

_WARM_UP, _HOPS, _ROUNDS = 500, 20_000, 3


def _nothing() -> None:
    return None


async def _hops() -> float:
    """Microseconds of process CPU per hop."""
    for _ in range(_WARM_UP):
        await anyio.to_thread.run_sync(_nothing)
    started = time.process_time()
    for _ in range(_HOPS):
        await anyio.to_thread.run_sync(_nothing)
    return (time.process_time() - started) / _HOPS * 1e6


def main() -> None:
    loops: dict[str, Callable[[Coroutine[Any, Any, float]], float]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    rows = []
    for name, run in loops.items():
        figures = sorted(run(_hops()) for _ in range(_ROUNDS))
        rows.append([name, " / ".join(f"{figure:.1f}" for figure in figures)])
    print_table(
        f"CPU per thread-pool hop, µs, {_ROUNDS} rounds of {_HOPS:,} ({machine()})",
        ["event loop", "µs per hop (each round)"],
        rows,
    )


if __name__ == "__main__":
    main()
