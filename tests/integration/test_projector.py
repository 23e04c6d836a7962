"""The projector and replay over a real store (SQLite and PostgreSQL): the read models
hold exactly the protocol vectors' expected facts, whatever the arrival order, and
however often they are rebuilt."""

import os
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, select

from schemas import GENESIS_HASH, Heartbeat, SealedEvent, decode_event_batch
from services.api import Role, create_token
from services.eventstore import EventStore, open_event_store
from services.projections.device import DeviceProjection
from services.projections.read_store import ReadModelStore
from services.projector import Projector, replay
from tests.support.api_client import api_client, bearer
from tests.support.read_alerts import alert_rows
from tests.support.streams import EPOCH, device_stream, punch_data, reseal, timestamp
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_stream


def _append_vectors(store: EventStore, vectors_dir: Path, order_seed: int | None) -> None:
    """Append every vector event in small batches, in stream order or shuffled across
    and within devices (so events arrive out of seq order), some of them twice."""
    batches: list[list[Any]] = []
    for device in STREAM_DEVICES:
        events = load_stream(vectors_dir, device)["events"]
        batches += [events[start : start + 4] for start in range(0, len(events), 4)]
    if order_seed is not None:
        rng = random.Random(order_seed)
        rng.shuffle(batches)
        batches += rng.sample(batches, 3)  # redelivered
    for batch in batches:
        decoded = decode_event_batch(
            batch[0]["device_id"], batch_payload(batch[0]["device_id"], batch)
        )
        assert not decoded.rejections
        store.append(decoded.events)


def _sessions(read_models: ReadModelStore) -> dict[str, dict[str, Any]]:
    table = read_models.tables.sessions
    with read_models.engine.connect() as connection:
        rows = connection.execute(select(table)).mappings().all()
    return {row["device_id"]: dict(row) for row in rows}


def _devices(read_models: ReadModelStore) -> dict[str, dict[str, Any]]:
    table = read_models.tables.devices
    with read_models.engine.connect() as connection:
        rows = connection.execute(select(table.c.device_id, table.c.summary)).all()
    summaries = {row[0]: row[1] for row in rows}
    return {
        device: s if isinstance(s, dict) else orjson.loads(s) for device, s in summaries.items()
    }


def _assert_expected(read_models: ReadModelStore, vectors_dir: Path) -> None:
    sessions = _sessions(read_models)
    devices = _devices(read_models)
    for device in STREAM_DEVICES:
        expected = load_stream(vectors_dir, device)["expected"]
        session = sessions[device]
        assert session["session_id"] == expected["session_id"]
        assert session["cores_counted"] == expected["cores_counted"]
        assert session["cores_reported"] == expected["cores_reported"]
        assert session["reconciled"] is expected["reconciled"]
        assert round(session["coverage_pct"], 4) == expected["coverage_pct"]
        assert session["chain_status"] == "verified"
        summary = devices[device]
        assert summary["applied_through"] == expected["last_seq"]
        assert summary["last_hash"] == expected["last_hash"]
        assert round(summary["cartridge"]["life_used_pct"], 4) == expected["life_used_pct"]


def _catch_up(projector: Projector) -> None:
    while projector.step():
        pass


@pytest.mark.parametrize("order_seed", [None, 1, 2])
def test_read_models_hold_the_vectors_expected_facts(
    store: EventStore, store_url: str, vectors_dir: Path, order_seed: int | None
) -> None:
    """The vectors, appended in any order, fold into their expected read models; replays agree."""
    _append_vectors(store, vectors_dir, order_seed)
    read_models = ReadModelStore(store_url)
    _catch_up(Projector(store, read_models, batch_size=7))  # many small batches
    _assert_expected(read_models, vectors_dir)
    live = (_sessions(read_models), _devices(read_models))
    for _ in range(2):  # replayed twice: the same read models
        result = replay(store_url, store)
        assert result.events == store.count_events()
        assert (_sessions(read_models), _devices(read_models)) == live
    read_models.close()


def test_a_restarted_projector_resumes_where_it_stopped(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """A projector restarted after one batch resumes at its checkpoint and ends as expected."""
    _append_vectors(store, vectors_dir, order_seed=3)
    first = ReadModelStore(store_url)
    projector = Projector(store, first, batch_size=10)
    assert projector.step() == 10  # then the process "dies"
    first.close()
    second = ReadModelStore(store_url)
    _catch_up(Projector(store, second, batch_size=10))
    _assert_expected(second, vectors_dir)
    second.close()


def test_a_projector_keeps_its_folds_between_its_own_batches(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """Batch after batch with its checkpoint its own, the projector loads each device's
    saved fold once, not once a batch; the read models are as expected."""
    _append_vectors(store, vectors_dir, order_seed=5)
    read_models = ReadModelStore(store_url)
    loaded: list[str] = []
    load = read_models.projections

    def counted(
        device_ids: Iterable[str], connection: Connection | None = None
    ) -> dict[str, DeviceProjection]:
        wanted = list(device_ids)
        loaded.extend(wanted)
        return load(wanted, connection)

    read_models.projections = counted  # type: ignore[method-assign]
    projector = Projector(store, read_models, batch_size=3)
    batches = 0
    while projector.step():
        batches += 1
    assert batches > 2 * len(STREAM_DEVICES)
    assert sorted(loaded) == sorted(set(loaded))
    _assert_expected(read_models, vectors_dir)
    read_models.close()


def test_projectors_taking_turns_load_what_the_other_folded(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """Two projectors of one checkpoint folding a batch each in turn (a failover and
    back): each sees the checkpoint moved by the other and loads the folds afresh, so
    no device misses the other's events."""
    _append_vectors(store, vectors_dir, order_seed=6)
    read_models = ReadModelStore(store_url)
    first, second = (Projector(store, read_models, batch_size=4) for _ in range(2))
    while first.step() + second.step():
        pass
    _assert_expected(read_models, vectors_dir)
    assert all(device["chain_status"] == "verified" for device in _devices(read_models).values())
    read_models.close()


def test_a_replay_writes_a_session_still_open_as_the_live_projector_did(
    store: EventStore, store_url: str
) -> None:
    """A replay writes a session's row once, at its end or, still open, at the end of
    the replay: the open session's row is the live projector's, punches and all."""
    store.append(device_stream("HP-000777", 14))
    read_models = ReadModelStore(store_url)
    _catch_up(Projector(store, read_models, batch_size=4))
    live = _sessions(read_models)
    assert live["HP-000777"]["ended_at"] is None
    assert live["HP-000777"]["cores_counted"] > 0
    replay(store_url, store, batch_size=3)
    assert _sessions(read_models) == live
    read_models.close()


def test_replay_runs_beside_a_live_projector(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """A replay running beside a live projector leaves the read models as expected."""
    _append_vectors(store, vectors_dir, order_seed=None)
    read_models = ReadModelStore(store_url)
    live_events, replay_events = open_event_store(store_url), open_event_store(store_url)
    live = Projector(live_events, read_models, batch_size=5)
    stop = threading.Event()
    runner = threading.Thread(target=live.run, args=(stop, 0.05))
    runner.start()
    try:
        replay(store_url, replay_events, batch_size=9)
    finally:
        stop.set()
        runner.join(timeout=30)
        live_events.close()
        replay_events.close()
    _catch_up(Projector(store, read_models))
    _assert_expected(read_models, vectors_dir)
    read_models.close()


def test_the_replay_command_reports_its_rate(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """`coreline replay` rebuilds the read models and reports its rate in events/s."""
    _append_vectors(store, vectors_dir, order_seed=None)
    result = subprocess.run(
        [sys.executable, "-m", "services", "replay", "--database-url", store_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "replayed" in result.stdout
    assert "events/s" in result.stdout
    read_models = ReadModelStore(store_url)
    _assert_expected(read_models, vectors_dir)
    read_models.close()


def test_vector_sessions_raise_their_alerts_once_however_often_they_are_folded(
    store: EventStore, store_url: str, vectors_dir: Path
) -> None:
    """The vectors' sessions raise their alerts once, however often they are folded or replayed."""
    _append_vectors(store, vectors_dir, order_seed=4)
    read_models = ReadModelStore(store_url)
    _catch_up(Projector(store, read_models, batch_size=6))
    # HP-000012's session removed 14.6 % of its area; HP-000013's does not reconcile.
    overshoot = load_stream(vectors_dir, "HP-000012")["expected"]["session_id"]
    mismatch = load_stream(vectors_dir, "HP-000013")["expected"]["session_id"]
    expected = [
        ("HP-000012", "coverage_exceeded", overshoot, "open"),
        ("HP-000013", "session_count_mismatch", mismatch, "open"),
    ]
    assert alert_rows(read_models) == expected
    events_before = store.count_events()
    # A second projector folding everything again (as after a lost checkpoint) decides
    # the same alert events: the store keeps them once, nothing new is raised.
    _catch_up(Projector(store, read_models, name="projector-again", batch_size=11))
    assert store.count_events() == events_before
    replay(store_url, store)
    assert alert_rows(read_models) == expected
    read_models.close()


def test_the_projector_refuses_to_start_without_a_webhook_master_key(store_url: str) -> None:
    """`coreline projector` exits 2 naming CORELINE_WEBHOOK_MASTER_KEY when it is unset."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    result = subprocess.run(
        [sys.executable, "-m", "services", "projector", "--database-url", store_url],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "CORELINE_WEBHOOK_MASTER_KEY" in result.stderr


def test_a_seq_conflict_refused_by_the_store_raises_an_integrity_alert(
    store: EventStore, store_url: str
) -> None:
    """A forged event the store refuses for its seq raises one integrity incident, judged once."""
    original = device_stream("HP-000321", 5)
    store.append(original)
    forged = reseal(original[4], data=punch_data(5, actuations=13))
    result = store.append([forged])
    assert len(result.rejected) == 1  # kept out, dead-lettered
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models)
    _catch_up(projector)
    projector.tick()
    projector.tick()  # judged once
    _catch_up(projector)
    assert alert_rows(read_models) == [("HP-000321", "integrity", "refused-events", "open")]
    read_models.close()


def _second_board(device_id: str, count: int) -> list[SealedEvent]:
    """Another board's own chain under ``device_id``: the same seqs, other bytes."""
    chain: list[SealedEvent] = []
    prev_hash = GENESIS_HASH
    for event in device_stream(device_id, count):
        forged = reseal(
            event,
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"second-board:{device_id}:{event.seq}")),
            occurred_at=timestamp(EPOCH + timedelta(hours=5, seconds=event.seq)),
            prev_hash=prev_hash,
        )
        chain.append(forged)
        prev_hash = forged.hash
    return chain


def test_refusals_of_one_device_are_one_incident_shown_by_the_api_until_resolved(
    store: EventStore, store_url: str
) -> None:
    """Two boards' chains under one id: the refused events, over several ticks, are one
    integrity alert counting them all; the API shows the device ``integrity`` until a
    person resolves it; a later refusal opens a second alert; a replay agrees."""
    device = "HP-000322"
    store.append(device_stream(device, 12))
    board = _second_board(device, 12)
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models)
    _catch_up(projector)
    assert len(store.append(board[:6]).rejected) == 6
    projector.tick()
    _catch_up(projector)
    assert len(store.append(board[6:11]).rejected) == 5
    projector.tick()
    projector.tick()
    _catch_up(projector)
    assert alert_rows(read_models) == [(device, "integrity", "refused-events", "open")]
    _, token = create_token(read_models.engine, Role.MANUFACTURER, None, "qa-lead")
    headers = bearer(token)
    with api_client(store_url) as client:
        detail = client.get(f"/api/v1/devices/{device}", headers=headers).json()
        assert (detail["status"], detail["attention"][0]) == ("integrity", "integrity")
        listed = client.get("/api/v1/devices?status=integrity", headers=headers).json()
        assert [item["device_id"] for item in listed["items"]] == [device]
        (alert,) = client.get(f"/api/v1/alerts?device_id={device}", headers=headers).json()["items"]
        assert detail["integrity_alerts"] == [alert["alert_id"]]
        assert (alert["context"]["refused_events"], alert["context"]["seqs"]) == (11, "1-11")
        resolved = client.post(
            f"/api/v1/alerts/{alert['alert_id']}/resolve",
            headers=headers,
            json={"note": "second board recalled"},
        )
        assert resolved.status_code == 202
        _catch_up(projector)
        detail = client.get(f"/api/v1/devices/{device}", headers=headers).json()
        assert (detail["status"], detail["integrity_alerts"]) == ("ok", [])
        assert len(store.append(board[11:]).rejected) == 1
        projector.tick()
        _catch_up(projector)
        assert client.get(f"/api/v1/devices/{device}", headers=headers).json()["status"] == (
            "integrity"
        )
        alerts = client.get(f"/api/v1/alerts?device_id={device}", headers=headers).json()
        assert sorted(a["status"] for a in alerts["items"]) == ["open", "resolved"]
        first = next(a for a in alerts["items"] if a["status"] == "resolved")
        assert first["resolved_by"].startswith("qa-lead")
        assert first["note"] == "second board recalled"
    live = (_devices(read_models), alert_rows(read_models))
    replay(store_url, store)
    assert (_devices(read_models), alert_rows(read_models)) == live
    read_models.close()


def test_a_heartbeat_stamped_by_a_wrong_clock_is_no_sign_of_life(
    store: EventStore, store_url: str
) -> None:
    """A device silent in a session raises device_offline even though its last heartbeat
    says 9999-12-31: an implausible device time does not keep it "heard"."""
    device = "HP-000323"
    store.append(device_stream(device, 5))  # seq 3 opened a session
    at_9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    store.record_heartbeats([Heartbeat(device_id=device, sampled_at=timestamp(at_9999))])
    read_models = ReadModelStore(store_url)
    later = datetime.now(UTC) + timedelta(minutes=10)
    projector = Projector(store, read_models, clock=lambda: later)
    _catch_up(projector)
    projector.tick()
    _catch_up(projector)
    assert (device, "device_offline", "presence", "open") in alert_rows(read_models)
    read_models.close()


def test_the_clock_looks_at_the_projectors_own_folds_with_one_heartbeat_read(
    store: EventStore, store_url: str
) -> None:
    """After its own batches the projector's clock judges silence from the folds it
    keeps (no snapshot loaded again) and reads the heartbeats of all the devices it
    looks at in one read: a device heard a minute ago stays quiet, a silent one is
    offline."""
    heard, silent = "HP-000324", "HP-000325"
    for device in (heard, silent):
        store.append(device_stream(device, 5))  # seq 3 opened a session
    later = datetime.now(UTC) + timedelta(minutes=10)
    store.record_heartbeats(
        [Heartbeat(device_id=heard, sampled_at=timestamp(later - timedelta(minutes=1)))]
    )
    read_models = ReadModelStore(store_url)
    loaded: list[str] = []
    load = read_models.projections

    def counted(
        device_ids: Iterable[str], connection: Connection | None = None
    ) -> dict[str, DeviceProjection]:
        wanted = list(device_ids)
        loaded.extend(wanted)
        return load(wanted, connection)

    read_models.projections = counted  # type: ignore[method-assign]
    reads: list[str] = []
    newest, latest = store.newest_heartbeats, store.latest_heartbeats

    def newest_counted(device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        reads.append("newest")
        return newest(device_ids)

    def latest_counted(device_id: str, limit: int = 100) -> list[Heartbeat]:
        reads.append(device_id)
        return latest(device_id, limit)

    store.newest_heartbeats = newest_counted  # type: ignore[method-assign]
    store.latest_heartbeats = latest_counted  # type: ignore[method-assign]
    projector = Projector(store, read_models, clock=lambda: later)
    _catch_up(projector)
    loaded_by_the_folds = sorted(loaded)
    projector.tick()
    assert sorted(loaded) == loaded_by_the_folds == [heard, silent]
    assert reads == ["newest"]
    _catch_up(projector)
    offline = {alert[0] for alert in alert_rows(read_models) if alert[1] == "device_offline"}
    assert offline == {silent}
    read_models.close()
