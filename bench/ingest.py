"""End-to-end ingest: publishers → Mosquitto → ``coreline gateway`` → PostgreSQL.

    python -m bench.ingest [--events 60000]

Everything runs on this machine, each part in its own process: PostgreSQL with its
default durable settings, Mosquitto, the gateway (one process) and a publisher
process holding pre-sealed ``cores.punched`` events of a few hundred handpieces.
Two shapes, both at QoS 1:

* **batched**: 50 events per MQTT message (an agent with a backlog, or a busy one);
* **single**: one event per message (an agent publishing as events happen).

Throughput counts events from the first publish until a reader tailing the store
has seen the last one committed.  Latency is measured at half that throughput:
from each message's publish to the moment the tailing reader sees its events,
p50 and p99.  The ceiling is a raw binary COPY of the same rows into an unindexed
table on the same server, in the same batch sizes (``bench.append``).

Beside each full-load figure, the CPU each part spent per event over the run (from
``/proc``: the gateway processes, PostgreSQL's server processes, Mosquitto, and the
publisher's and reader's own work), so that on two shared cores it shows where the
time goes.  ``--gateways 2`` runs two gateways splitting the load through an MQTT 5
shared subscription.
"""

import argparse
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.append import ceiling_appender, fleet_events, timed
from bench.report import machine, print_table
from edge_agent.outbox import OutboxEntry, wire_bytes
from edge_agent.publisher import batch_payload
from schemas import DeviceChannel, SealedEvent, device_topic
from services.eventstore import Cursor, upgrade_schema
from services.eventstore.postgres import PostgresEventStore
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.postgres import TemporaryPostgres

PROFILE_DIR: Path | None = None
"""``--profile DIR``: run the gateway under py-spy and keep its samples there."""
GATEWAYS = 1
"""``--gateways N``: gateway processes on one shared subscription."""

Message = tuple[str, bytes, tuple[str, int]]
"""Topic, payload, and the (device, seq) of its last event."""


@dataclass(frozen=True)
class Run:
    shape: str
    events: int
    seconds: float
    latencies_ms: list[float]
    cpu_s: dict[str, float]
    """CPU seconds each part spent over the run."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def messages(events: Sequence[SealedEvent], per_message: int) -> list[Message]:
    built: list[Message] = []
    run: list[SealedEvent] = []
    for event in events:  # fleet_events keeps each device's events in runs of 50
        if run and (len(run) == per_message or run[-1].device_id != event.device_id):
            built.append(_message(run))
            run = []
        run.append(event)
    if run:
        built.append(_message(run))
    return built


def _message(run: list[SealedEvent]) -> Message:
    device = run[0].device_id
    entries = [OutboxEntry(device, event.seq, wire_bytes(event)) for event in run]
    topic = device_topic(device, DeviceChannel.EVENTS)
    return topic, batch_payload(device, entries), (device, run[-1].seq)


def publish(port: int, batch: list[Message], rate: float | None, results: Connection) -> None:
    """In its own process: publish at QoS 1 (at ``rate`` messages/s when given) and
    report when each message went out."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-publisher",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent: list[tuple[tuple[str, int], float]] = []
    started = time.monotonic()
    cpu_started = time.process_time()
    infos = []
    for index, (topic, payload, key) in enumerate(batch):
        if rate is not None:
            pause = started + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        sent.append((key, time.time()))
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    results.send((sent, time.process_time() - cpu_started))


def tail(url: str, total: int, results: Connection) -> None:
    """In its own process: when did each (device, seq) become readable?"""
    store = PostgresEventStore(url)
    cpu_started = time.process_time()
    cursor = Cursor.START
    seen: dict[tuple[str, int], float] = {}
    deadline = time.monotonic() + 600
    while len(seen) < total and time.monotonic() < deadline:
        batch = store.read(cursor, limit=10_000)
        now = time.time()
        for event in batch:
            seen[event.stream_id, event.seq] = now
        if batch:
            cursor = batch[-1].cursor
        else:
            time.sleep(0.005)
    store.close()
    results.send((seen, time.process_time() - cpu_started))


def run_shape(
    server: TemporaryPostgres,
    broker: TemporaryMosquitto,
    name: str,
    batch: list[Message],
    total: int,
    rate: float | None,
) -> Run:
    url = server.create_database(f"ingest_{name}_{int(time.time() * 1000)}")
    upgrade_schema(url)
    log = Path(tempfile.mkdtemp(prefix="coreline-bench-")) / "gateway.log"
    share = f"bench-{name}" if GATEWAYS > 1 else None
    gateways = [_start_gateway(url, broker, log, f"bench-gateway-{name}-{n}", share)
                for n in range(GATEWAYS)]  # fmt: skip
    _wait_started([g.pid for g in gateways])
    servers = {
        "gateway": [g.pid for g in gateways],
        "postgres": [_postmaster(server)],
        "mosquitto": [_mosquitto(broker)],
    }
    cpu_before = {part: sum(map(_cpu_s, pids)) for part, pids in servers.items()}
    context = multiprocessing.get_context("spawn")
    tail_out, tail_in = context.Pipe(duplex=False)
    pub_out, pub_in = context.Pipe(duplex=False)
    reader = context.Process(target=tail, args=(url, total, tail_in))
    reader.start()
    publisher = context.Process(target=publish, args=(broker.port, batch, rate, pub_in))
    publisher.start()
    sent: list[tuple[tuple[str, int], float]]
    seen: dict[tuple[str, int], float]
    sent, publisher_cpu = pub_out.recv()
    seen, reader_cpu = tail_out.recv()
    cpu = {part: sum(map(_cpu_s, pids)) - cpu_before[part] for part, pids in servers.items()}
    cpu.update(publisher=publisher_cpu, reader=reader_cpu)
    publisher.join()
    reader.join()
    for gateway in gateways:
        gateway.send_signal(signal.SIGINT)  # py-spy, when profiling, writes its samples then
    for gateway in gateways:
        gateway.wait(timeout=60)
    if len(seen) < total:
        raise RuntimeError(f"{name}: only {len(seen)} of {total} events stored; see {log}")
    first = min(moment for _, moment in sent)
    last = max(seen.values())
    latencies = sorted((seen[key] - moment) * 1000 for key, moment in sent)
    return Run(name, total, last - first, latencies, cpu)


_TICK_S: Final = 1 / os.sysconf("SC_CLK_TCK")


def _wait_started(pids: list[int], timeout_s: float = 60.0) -> None:
    """Until the gateways are idle (imports done, subscribed): on a loaded machine
    start-up takes longer than any fixed pause, and its CPU is not ingest's."""
    time.sleep(2.0)
    deadline = time.monotonic() + timeout_s
    spent = sum(map(_cpu_s, pids))
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(map(_cpu_s, pids))
        if now - spent < 0.02:
            return
        spent = now


def _cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its children that exited, and its live descendants."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
    total += sum(int(field) for field in fields[11:15]) * _TICK_S
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            total += _cpu_s(int(child))
    return total


def _postmaster(server: TemporaryPostgres) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def _mosquitto(broker: TemporaryMosquitto) -> int:
    process = broker._process  # the bench only reads its pid
    assert process is not None
    return process.pid


def _start_gateway(
    url: str, broker: TemporaryMosquitto, log: Path, client_id: str, share: str | None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "services", "gateway", "--database-url", url,
               "--mqtt-url", broker.url, "--metrics-port", "0", "--client-id", client_id,
               "--log-level", "warning"]  # fmt: skip
    if share is not None:
        command += ["--share-group", share]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    if PROFILE_DIR is not None:  # sample the gateway: where does its time go?
        profile = PROFILE_DIR / f"{client_id}.txt"
        py_spy = str(Path(sys.executable).parent / "py-spy")
        command = [py_spy, "record", "--format", "raw", "--nonblocking", "-o", str(profile),
                   "--", *command]  # fmt: skip
    with log.open("ab") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--profile", type=Path, help="py-spy samples of the gateway go here")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes (1 or 2)")
    arguments = parser.parse_args()
    total = arguments.events
    global PROFILE_DIR, GATEWAYS  # noqa: PLW0603 - run-wide switches set once from the command line
    PROFILE_DIR = arguments.profile
    GATEWAYS = arguments.gateways
    events = fleet_events(total)
    rows = []
    cpu_rows = []
    with TemporaryPostgres(durable=True) as server, TemporaryMosquitto() as broker:
        for name, per_message in (("batched", 50), ("single", 1)):
            sample = events if per_message > 1 else events[: total // 3]
            batch = messages(sample, per_message)
            full = run_shape(server, broker, name, batch, len(sample), rate=None)
            # Half the measured load, for about 10 s, to see latency without queueing.
            half_rate = full.rate / per_message / 2
            paced = batch[: max(1, int(half_rate * 10))]
            paced_events = len(paced) * per_message
            half = run_shape(server, broker, f"{name}-half", paced, paced_events, half_rate)
            append, close = ceiling_appender(server.create_database(f"ceiling_{name}"))
            ceiling = timed("COPY ceiling", per_message, sample, append)
            close()
            rows.append(
                (
                    name,
                    f"{full.rate:,.0f} ev/s ({full.rate / per_message:,.0f} msg/s)",
                    f"{ceiling.rate:,.0f} ev/s",
                    f"{full.rate / ceiling.rate:.0%}",
                    f"{percentile(half.latencies_ms, 0.5):.0f} / "
                    f"{percentile(half.latencies_ms, 0.99):.0f} ms",
                )
            )
            busy = sum(full.cpu_s.values())
            cpu_rows.append(
                (
                    name,
                    *(f"{full.cpu_s[part] / full.events * 1e6:.1f}" for part in _PARTS),
                    f"{busy / full.seconds:.2f} of 2",
                )
            )
    print_table(
        f"End-to-end ingest, QoS 1 ({machine()})",
        ("shape", "gateway into PostgreSQL", "COPY ceiling", "of ceiling", "p50 / p99, half load"),
        rows,
    )
    print_table(
        f"CPU µs per event at full load, {GATEWAYS} gateway process(es)",
        ("shape", *_PARTS, "cores busy"),
        cpu_rows,
    )


_PARTS: Final = ("gateway", "postgres", "mosquitto", "publisher", "reader")


if __name__ == "__main__":
    main()
