"""The gateway process's garbage-collector setting."""

import gc
from collections.abc import Iterator

import pytest

from gateway.service import YOUNG_COLLECTION_THRESHOLD, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_collections_are_rare() -> None:
    """After tuning, what was loaded at start-up is out of every collection and the
    youngest generation is collected once per ``YOUNG_COLLECTION_THRESHOLD`` allocations."""
    tune_collector()
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    assert gc.isenabled()
