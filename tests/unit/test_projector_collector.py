"""The projector process's garbage-collector setting."""

import gc
from collections.abc import Iterator

import pytest

from services.projector import tune_collector
from services.projector.runner import YOUNG_COLLECTION_THRESHOLD


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_out_of_full_collections() -> None:
    """After tuning, what was loaded before is frozen, so a full collection walks only
    what the process made since: a fraction of the heap, not all of it."""
    before = len(gc.get_objects())
    tune_collector()
    assert gc.get_freeze_count() > 1000
    assert len(gc.get_objects()) < before / 10
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    assert gc.isenabled()
