"""Read models an earlier release wrote, brought up to this one's before folding.

A column this release folds into is missing: the read models are rebuilt by replay
(``coreline replay``'s code, the live tables swapped for fresh ones); an index it
declares is missing: it is built in place, the rows being right already.
"""

from collections.abc import Callable

from services.eventstore import EventStore
from services.projections.read_schema import build_missing_indexes, read_schema_gap
from services.projections.read_store import ReadModelStore
from services.projector.replay import ReplayResult, replay


def bring_up_to_date(
    read_models: ReadModelStore,
    database_url: str,
    events: EventStore,
    say: Callable[[str], None],
) -> ReplayResult | None:
    """Returns the replay's result when one was needed."""
    gap = read_schema_gap(read_models.engine, read_models.tables)
    result = None
    if gap.needs_replay:
        say(
            f"the read models are an earlier release's ({gap.describe()}): "
            "rebuilding them from the event store"
        )
        result = replay(database_url, events)
        say(f"rebuilt from {result.events:,} events in {result.seconds:.1f} s")
    if gap.indexes:
        say(f"building {len(gap.indexes)} index(es) this release adds")
        build_missing_indexes(read_models.engine, gap)
    return result
