"""The cyclic garbage collector's setting for a long-running process.

Python's default setting collects the youngest generation every 700 allocations and,
once enough objects have aged, walks every object the process holds.  A service
process holds a large heap from start-up (modules, types, validators, SQL
constructs: 130,000 and more tracked objects) that never becomes garbage, and each
walk of it holds the interpreter lock, and so every thread of the process, for tens
to hundreds of milliseconds.  Freezing what start-up loaded takes it out of every
collection; rarer young collections mean fewer short-lived objects survive long
enough to trigger a full one.  The data the services hold has no cycles, so
reference counting frees it, not the collector.
"""

import gc


def collect_rarely(young_threshold: int) -> None:
    """Freeze what is loaded now and collect the youngest generation once per
    ``young_threshold`` allocations; call once, when start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 50, 1000)
