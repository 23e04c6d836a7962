"""The gateway's and the projector's garbage-collector settings
(``services.collector``)."""

import gc
from collections.abc import Iterator

import pytest

from gateway import service as gateway_service
from services.projector import runner as projector_runner


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_gateway_start_up_objects_are_frozen_and_collections_are_rare() -> None:
    """After tuning, what was loaded at start-up is out of every collection and the
    youngest generation is collected once per ``YOUNG_COLLECTION_THRESHOLD`` allocations."""
    gateway_service.tune_collector()
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold()[0] == gateway_service.YOUNG_COLLECTION_THRESHOLD
    assert gc.isenabled()


@pytest.mark.usefixtures("restored_collector")
def test_projector_start_up_objects_are_out_of_full_collections() -> None:
    """After tuning, what was loaded before is frozen, so a full collection walks only
    what the process made since: a fraction of the heap, not all of it."""
    before = len(gc.get_objects())
    projector_runner.tune_collector()
    assert gc.get_freeze_count() > 1000
    assert len(gc.get_objects()) < before / 10
    assert gc.get_threshold()[0] == projector_runner.YOUNG_COLLECTION_THRESHOLD
    assert gc.isenabled()
