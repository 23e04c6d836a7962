"""Alert latency: from publishing the wear report that crosses 95 % to the
``needle_end_of_life`` notice arriving on the clinic's MQTT topic, under load.

    python -m bench.alerts [--probes 30] [--load 5000]

Every part runs as in production, each in its own process: PostgreSQL (durable),
Mosquitto, ``coreline gateway``, ``coreline projector`` (folds, alert engine,
notifier) and a publisher keeping up ``--load`` events/s of background punches
(batches of 50).  Each probe is a handpiece of a registered clinic whose cartridge
stands at 90 %; its ``needle.wear`` report of 96 % is timed from publish to the
notice.  The baseline, in the same run, is a bare MQTT round trip through the same
broker.  Beside it, the CPU time the projector's process spent per event ingested
during the probes (folds, alert engine, writes), its threads', and its child
processes' (the log keeper and configuration delivery run in processes of their
own), summed with the process's so the whole figure stays comparable with runs from
before they did: the machine is shared, and wall clock latencies grow with its load.
Target: p99 ≤ 100 ms.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.append import fleet_events
from bench.ingest import messages, percentile
from bench.report import machine, print_table
from schemas import GENESIS_HASH, SealedEvent, seal, utc_text
from schemas.streams import registry_stream
from services.eventstore import open_event_store, upgrade_schema
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.postgres import TemporaryPostgres

CLINIC = "clinic-bench"
SESSION = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
_NAMESPACE = uuid.UUID("2b1c0c3e-9a7e-4c3e-8d1f-6f1c2a4e6d1f")


def _chain(
    device: str, steps: list[tuple[str, dict[str, Any]]], stream: str | None = None
) -> list[SealedEvent]:
    events, prev_hash, moment = [], GENESIS_HASH, datetime.now(UTC)
    for seq, (kind, data) in enumerate(steps, start=1):
        event = seal({
            "event_id": str(uuid.uuid5(_NAMESPACE, f"{stream or device}:{seq}")),
            "device_id": device, "seq": seq, "type": kind, "occurred_at": utc_text(moment),
            "schema_version": 1, "data": data, "prev_hash": prev_hash,
        }, stream)  # fmt: skip
        events.append(event)
        prev_hash = event.hash
    return events


def probe_stream(device: str) -> list[SealedEvent]:
    """Boot, a 1,000-actuation cartridge, a session, 900 actuations, then the 96 %
    wear report (the last event: the one that is timed)."""
    now = datetime.now(UTC)
    window = {"window_start": utc_text(now), "window_end": utc_text(now + timedelta(seconds=1))}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0", "boot_id": "b"}),
        ("cartridge.installed", {"cartridge_id": "CT-P", "lot": "L", "needles": 1,
                                 "needle_gauge": 22, "core_diameter_mm": 0.5,
                                 "rated_actuations": 1000}),
        ("session.started", {"session_id": SESSION, "treatment_area": "neck",
                             "area_cm2": 2000.0, "operator_ref": "op", "cartridge_id": "CT-P"}),
        ("cores.punched", {"session_id": SESSION, "cartridge_id": "CT-P", "actuations": 900,
                           "cores": 900, "depth_mm": 1.5, **window}),
        ("needle.wear", {"cartridge_id": "CT-P", "actuations_total": 900, "wear_pct": 96.0,
                         "insertion_force_n": 3.1}),
    ]  # fmt: skip
    return _chain(device, steps)


def registry_events(device: str) -> list[SealedEvent]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("device.registered", {"model": "CL-3", "registered_by": "bench"}),
        ("device.assigned", {"clinic_id": CLINIC, "assigned_by": "bench"}),
    ]
    return _chain(device, steps, registry_stream(device))


def _batch(events: list[SealedEvent]) -> bytes:
    device = events[0].device_id
    return orjson.dumps({"device_id": device, "events": [e.to_wire() for e in events]})


def background(port: int, load: float, ready: EventType, stop: EventType) -> None:
    """In its own process: ``load`` events/s in batches of 50 until stopped."""
    batch = messages(fleet_events(250_000), 50)
    client = _client("load")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.set()
    started, sent = time.monotonic(), 0
    while not stop.is_set() and sent < len(batch):
        pause = started + sent * 50 / load - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        topic, payload, _ = batch[sent]
        client.publish(topic, payload, qos=1)
        sent += 1
    client.disconnect()
    client.loop_stop()


class Watcher:
    """Subscribes to the clinic's alert topic and notes when each notice arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.client = _client("watch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        now = time.monotonic()
        try:
            notice = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            notice = {"device_id": "raw", "rule": message.payload.decode(errors="replace")}
        with self.lock:
            self.arrivals.setdefault((notice.get("device_id", ""), notice.get("rule", "")), now)

    def wait(self, key: tuple[str, str], timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if key in self.arrivals:
                    return self.arrivals[key]
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _process(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CORELINE_")} | env
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "services", *args], env=environment,
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def process_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far (Linux ``/proc``: utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--load", type=float, default=5000.0)
    arguments = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="coreline-bench-"))
    with TemporaryPostgres(durable=True) as server, TemporaryMosquitto() as broker:
        url = server.create_database("coreline")
        upgrade_schema(url)
        probes = [f"HP-9{n:05d}" for n in range(arguments.probes)]
        store = open_event_store(url)
        for device in probes:
            store.append(registry_events(device))
        store.close()
        env = {"CORELINE_DATABASE_URL": url, "CORELINE_MQTT_URL": broker.url,
               "CORELINE_WEBHOOK_MASTER_KEY": "b" * 64}  # fmt: skip
        gateway = _process(["gateway", "--metrics-port", "0", "--log-level", "warning"],
                           logs / "gateway.log", **env)  # fmt: skip
        projector = _process(["projector", "--log-level", "warning"], logs / "projector.log", **env)
        time.sleep(3)
        watcher = Watcher(broker.port, f"coreline/v1/clinics/{CLINIC}/alerts")
        rtt = _round_trips(broker.port, watcher, 30)
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Event(), context.Event()
        load = context.Process(target=background, args=(broker.port, arguments.load, ready, stop))
        load.start()
        ready.wait(300)  # sealing the load's events takes a while
        time.sleep(3)  # the load settles
        counter = open_event_store(url)
        before, window_started = counter.count_events(), time.monotonic()
        cpu_before, load_average = process_cpu(projector.pid), os.getloadavg()[0]
        threads_before = thread_cpu(projector.pid)
        children_before = {pid: process_cpu(pid) for pid in descendants(projector.pid)}
        timed = _probe(broker.port, probes, watcher)
        events = counter.count_events() - before
        ingested = events / (time.monotonic() - window_started)
        projector_cpu = (process_cpu(projector.pid) - cpu_before) / max(events, 1)
        threads = {
            tid: (used - threads_before.get(tid, 0.0)) / max(events, 1)
            for tid, used in thread_cpu(projector.pid).items()
        }
        names = thread_names(projector.pid)
        # A child restarted during the window counts from zero; one gone counts as
        # what it had used by the start.
        children = {
            pid: (_cpu_or(pid, children_before.get(pid, 0.0)) - children_before.get(pid, 0.0))
            / max(events, 1)
            for pid in {*children_before, *descendants(projector.pid)}
        }
        names |= {pid: process_role(pid) for pid in children}
        counter.close()
        parts = stages(url, timed)
        stop.set()
        load.join(timeout=30)
        watcher.close()
        for process in (gateway, projector):
            process.terminate()
            process.wait(timeout=30)
    latencies = sorted(
        (probe.arrived - probe.published) * 1000 for probe in timed if probe.arrived is not None
    )
    rtt.sort()
    print_table(
        f"Alert latency while ingesting {ingested:,.0f} events/s ({machine()})",
        ("", "p50", "p99", "samples"),
        [
            (
                "wear report → needle_end_of_life notice",
                f"{percentile(latencies, 0.5):.0f} ms",
                f"{percentile(latencies, 0.99):.0f} ms",
                str(len(latencies)),
            ),
            (
                "baseline: MQTT round trip",
                f"{percentile(rtt, 0.5):.1f} ms",
                f"{percentile(rtt, 0.99):.1f} ms",
                str(len(rtt)),
            ),
            *(
                (
                    f"  {part}",
                    f"{percentile(samples, 0.5):.0f} ms" if samples else "-",
                    f"{percentile(samples, 0.99):.0f} ms" if samples else "-",
                    str(len(samples)),
                )
                for part, samples in parts
            ),
        ],
    )
    _print_cpu(threads, names, children, projector_cpu, load_average)
    print(f"target p99 ≤ 100 ms; logs in {logs}")


def _client(role: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-{role}-{uuid.uuid4()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )


def _publisher(port: int) -> mqtt.Client:
    client = _client("probe")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _round_trips(port: int, watcher: Watcher, count: int) -> list[float]:
    client = _publisher(port)
    samples = []
    for n in range(count):
        key = ("rtt", str(n))
        started = time.monotonic()
        payload = orjson.dumps({"device_id": "rtt", "rule": str(n)})
        client.publish(f"coreline/v1/clinics/{CLINIC}/alerts", payload, qos=1)
        arrived = watcher.wait(key, 5)
        if arrived is not None:
            samples.append((arrived - started) * 1000)
    client.disconnect()
    client.loop_stop()
    return samples


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe's publish and notice, in wall-clock seconds (``time.time``), so
    they compare with the times the store records."""

    device_id: str
    published: float
    arrived: float | None


def _probe(port: int, probes: list[str], watcher: Watcher) -> list[Probe]:
    client = _publisher(port)
    wall = time.time() - time.monotonic()
    timed = []
    for device in probes:
        stream = probe_stream(device)
        topic = f"coreline/v1/devices/{device}/events"
        client.publish(topic, _batch(stream[:-1]), qos=1).wait_for_publish(10)
        watcher.wait((device, "needle_life_low"), 10)  # the 90 % alert: state is in place
        started = time.monotonic()
        client.publish(topic, _batch(stream[-1:]), qos=1)
        arrived = watcher.wait((device, "needle_end_of_life"), 10)
        timed.append(Probe(device, started + wall, None if arrived is None else arrived + wall))
    client.disconnect()
    client.loop_stop()
    return timed


def stages(url: str, timed: list[Probe]) -> list[tuple[str, list[float]]]:
    """Where each probe's time went (ms), from the times the store recorded: publish →
    the wear report appended by the gateway (its ``received_at``: MQTT, linger,
    decoding) → the ``needle_end_of_life`` alert event (the escalation of the probe's
    ``needle_life_low`` alert) appended by the projector (the wake,
    the fold, the rules) → the notice on the clinic's topic (the notifier's wake, its
    read and the QoS 1 publish)."""
    arrived = {probe.device_id: probe for probe in timed if probe.arrived is not None}
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT device_id, type, received_at, body FROM events "
            "WHERE device_id = ANY(%s) AND type IN ('needle.wear', 'alert.escalated')",
            (list(arrived),),
        ).fetchall()
    stored: dict[str, float] = {}
    raised: dict[str, float] = {}
    for device_id, kind, received_at, body in rows:
        if kind == "needle.wear":
            stored[device_id] = received_at.timestamp()
        elif b"needle_end_of_life" in bytes(body):  # the probe alert climbed
            raised[device_id] = received_at.timestamp()
    parts: list[tuple[str, list[float]]] = [
        ("publish → wear report appended (gateway)", []),
        ("→ alert event appended (projector)", []),
        ("→ notice arrived (notifier)", []),
    ]
    for device_id, probe in arrived.items():
        if device_id in stored and device_id in raised and probe.arrived is not None:
            moments = (probe.published, stored[device_id], raised[device_id], probe.arrived)
            for (_, samples), start, end in zip(parts, moments, moments[1:], strict=False):
                samples.append((end - start) * 1000)
    for _, samples in parts:
        samples.sort()
    return parts


def _print_cpu(
    threads: dict[int, float],
    names: dict[int, str],
    children: dict[int, float],
    projector_cpu: float,
    load_average: float,
) -> None:
    busy = sorted(threads.items(), key=lambda item: -item[1])
    print("projector threads, CPU µs an event ingested: " + ", ".join(
        f"{names.get(tid, tid)} {used * 1e6:.1f}" for tid, used in busy if used > 0
    ))  # fmt: skip
    children_cpu = sum(children.values())
    print("projector child processes, CPU µs an event ingested: " + (", ".join(
        f"{names.get(pid, pid)} {used * 1e6:.1f}"
        for pid, used in sorted(children.items(), key=lambda i: -i[1])
    ) or "none"))  # fmt: skip
    print(f"projector CPU {projector_cpu * 1e6:.1f} µs an event ingested, "
          f"{(projector_cpu + children_cpu) * 1e6:.1f} with its child processes; "
          f"load average {load_average:.1f} at the start of the probes")  # fmt: skip


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by those, from Linux ``/proc``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        for child in map(int, children):
            found.append(child)
            found.extend(descendants(child))
    return found


def _cpu_or(pid: int, gone: float) -> float:
    try:
        return process_cpu(pid)
    except FileNotFoundError:
        return gone


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds each thread of process ``pid`` has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        used[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def process_role(pid: int) -> str:
    """What child process ``pid`` of the projector runs, from the function at the
    bottom of its main thread's stack in ``py-spy dump`` (its pid otherwise)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists() or not Path(f"/proc/{pid}").exists():
        return str(pid)
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                          text=True, timeout=30, check=False).stdout  # fmt: skip
    for role in ("run_log_keeper", "run_config_delivery", "resource_tracker"):
        if role in dump:
            return role
    return str(pid)


def thread_names(pid: int) -> dict[int, str]:
    """The Python names of the threads of ``pid``, from ``py-spy dump`` where it is
    installed beside this interpreter (empty otherwise)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {}
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                          text=True, timeout=30, check=False).stdout  # fmt: skip
    names = {}
    for line in dump.splitlines():
        if line.startswith("Thread "):
            tid, _, rest = line.removeprefix("Thread ").partition(" ")
            names[int(tid, 0)] = rest.rsplit(": ", 1)[-1].strip('"')
    return names


if __name__ == "__main__":
    main()
