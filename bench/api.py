"""HTTP API latency and CSV export rate over a large fleet's read models.

    python -m bench.api [--devices 10000] [--sessions 1000000] [--requests 300]

A durable PostgreSQL gets the schema and read-model tables, then a fleet bulk-loaded
with ``COPY`` (see ``bench.api_fleet``).  A real ``coreline api`` process serves it
and this process drives it over one keep-alive connection, one request at a time,
timing device lists (first and deep cursor pages, by clinic, by status), device
details, session lists (by device, by clinic over a week, first and deep pages) and
the full CSV export, with the API process's memory sampled during the export.

Two baselines in the same run, on the same requests: the API's query functions
called in-process (SQLAlchemy and the response models, no HTTP, no token), and the
very SQL they emit, captured and executed with bare psycopg, which is what the
database alone costs.  The export's baseline is ``COPY (SELECT …) TO STDOUT`` of the
same columns in the same order.  Target: p99 ≤ 100 ms for every request.

With ``--against TREE`` (another checkout, e.g. ``git worktree add /tmp/before HEAD``)
a second API process serves the same database from that tree, and the two take turns
over the same requests in blocks, the order swapped each round; the report gives each
one's API CPU per request (the median round) and latencies, and their ratio (the
first requests of each kind, the warm-up, must get the same bytes from both).  CPU
time is the figure to compare on a shared machine: the turns share its load.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import httpx
import psycopg
from sqlalchemy import Connection, Engine, event

from bench.api_fleet import DAYS, STATUSES, Fleet, load_fleet
from bench.report import machine, print_table
from services.api.access import Principal, Role
from services.api.models import SessionOut
from services.api.pagination import encode_cursor, time_key
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.tokens import create_token
from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.postgres import TemporaryPostgres, free_port

PAGE: Final = 100
TARGET_P99_MS: Final = 100.0
_MANUFACTURER: Final = Principal("bench", Role.MANUFACTURER, None, "bench")
_WARM_UP: Final = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One request, and the same query called in-process."""

    path: str
    params: dict[str, str | int]
    query: Callable[[Connection], object]


@dataclass(frozen=True)
class Latencies:
    name: str
    api: list[float]
    in_process: list[float]
    psycopg: list[float]
    api_cpu_ms: float = 0.0
    """The API process's CPU time per request (user + system)."""


@dataclass(frozen=True)
class Export:
    rows: int
    megabytes: float
    seconds: float
    first_byte: float
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    cpu_s: float = 0.0
    """CPU seconds of the process that formatted the rows (the API's; for COPY, none here)."""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def device_list(
    clinic_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
    q: str | None = None,
) -> Request:
    given = {"clinic_id": clinic_id, "status": status, "q": q}
    params: dict[str, str | int] = {"limit": PAGE} | {k: v for k, v in given.items() if v}
    if after is not None:
        params["cursor"] = encode_cursor([after])

    def query(connection: Connection) -> object:
        return device_queries.list_devices(
            connection, _MANUFACTURER, clinic_id=clinic_id, status=status, firmware=None,
            after=after, limit=PAGE, q=q,
        )  # fmt: skip

    return Request("/api/v1/devices", params, query)


def device_detail(device_id: str) -> Request:
    return Request(
        f"/api/v1/devices/{device_id}",
        {},
        lambda connection: device_queries.find_device(connection, _MANUFACTURER, device_id),
    )


def session_list(
    after: tuple[datetime, str] | None = None,
    *,
    device_id: str | None = None,
    clinic_id: str | None = None,
    started_from: datetime | None = None,
    started_to: datetime | None = None,
    q: str | None = None,
    flagged: bool = False,
) -> Request:
    given = {"device_id": device_id, "clinic_id": clinic_id, "q": q}
    params: dict[str, str | int] = {"limit": PAGE} | {k: v for k, v in given.items() if v}
    for name, moment in (("from", started_from), ("to", started_to)):
        if moment is not None:
            params[name] = moment.isoformat()
    if flagged:
        params["flagged"] = "true"
    if after is not None:
        params["cursor"] = encode_cursor(time_key(*after))

    def query(connection: Connection) -> object:
        statement = session_queries.session_query(
            _MANUFACTURER, device_id=device_id, clinic_id=clinic_id,
            started_from=started_from, started_to=started_to, q=q, flagged=flagged,
        )  # fmt: skip
        return session_queries.list_sessions(connection, statement, after, PAGE)

    return Request("/api/v1/sessions", params, query)


def request_kinds(fleet: Fleet, count: int, rng: random.Random) -> list[tuple[str, list[Request]]]:
    devices, clinics = fleet.device_ids, fleet.clinics
    statuses = [*STATUSES, "offline"]
    deep = [rng.choice(devices[len(devices) // 5 :]) for _ in range(count)]
    ranks = sorted(fleet.newest_first)

    def week(clinic: str) -> Request:
        start = fleet.now - timedelta(days=rng.uniform(7, DAYS))
        return session_list(clinic_id=clinic, started_from=start,
                            started_to=start + timedelta(days=7))  # fmt: skip

    return [
        ("devices, first page", [device_list() for _ in range(count)]),
        ("devices, deep page", [device_list(after=d) for d in deep]),
        ("devices by clinic", [device_list(clinic_id=rng.choice(clinics)) for _ in range(count)]),
        ("devices by status, first page",
         [device_list(status=rng.choice(statuses)) for _ in range(count)]),
        ("devices by status, deep page",
         [device_list(status=rng.choice(statuses), after=d) for d in deep]),
        ("device detail", [device_detail(rng.choice(devices)) for _ in range(count)]),
        ("sessions by device",
         [session_list(device_id=rng.choice(devices)) for _ in range(count)]),
        ("sessions by clinic, one week", [week(rng.choice(clinics)) for _ in range(count)]),
        ("sessions, first page", [session_list() for _ in range(count)]),
        ("sessions, deep page",
         [session_list(fleet.newest_first[rank]) for rank in rng.sample(ranks, count)]),
        # The dashboard's search box and "unreconciled / broken only" (prefix ranges
        # on indexed ids; a partial index of the flagged sessions).
        ("devices, search by id prefix",
         [device_list(q=rng.choice(devices)[:rng.randint(4, 9)]) for _ in range(count)]),
        ("sessions, search by device id prefix",
         [session_list(q=rng.choice(devices)[:rng.randint(4, 9)]) for _ in range(count)]),
        ("sessions, search by session id prefix",
         [session_list(q=fleet.newest_first[rank][1][:8]) for rank in rng.sample(ranks, count)]),
        ("sessions, unreconciled or broken only",
         [session_list(flagged=True) for _ in range(count)]),
    ]  # fmt: skip


def _timed(items: Sequence[T], run: Callable[[T], object]) -> list[float]:
    """Milliseconds per call, sorted, after a warm-up on the first few items."""
    for item in items[:_WARM_UP]:
        run(item)
    latencies = []
    for item in items:
        started = time.perf_counter()
        run(item)
        latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies)


def emitted_sql(engine: Engine, requests: Sequence[Request]) -> list[list[tuple[str, Any]]]:
    """The statements and parameters each request's query sends, as SQLAlchemy sends
    them (a search looks enrolled serials up before its list)."""
    captured: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        captured.append((args[2], args[3]))  # statement, parameters

    statements = []
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as connection:
            for request in requests:
                captured.clear()
                request.query(connection)
                statements.append(list(captured))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return statements


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, requests: list[Request], client: httpx.Client, engine: Engine, url: str, pid: int
) -> Latencies:
    def over_http(request: Request) -> object:
        response = client.get(request.path, params=request.params)
        response.raise_for_status()
        return response.content

    cpu = cpu_seconds(pid)
    api = _timed(requests, over_http)
    api_cpu_ms = (cpu_seconds(pid) - cpu) / len(requests) * 1000
    with engine.connect() as connection:
        in_process = _timed(requests, lambda request: request.query(connection))
    with psycopg.connect(url, autocommit=True) as raw, raw.cursor() as cursor:

        def direct(statements: list[tuple[str, Any]]) -> object:
            for statement in statements:
                cursor.execute(*statement)
            return cursor.fetchall()

        bare = _timed(emitted_sql(engine, requests), direct)
    return Latencies(name, api, in_process, bare, api_cpu_ms)


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def _drain(blocks: Iterator[bytes], started: float) -> tuple[int, int, float]:
    """Bytes, lines and seconds from ``started`` to the first block."""
    size = lines = 0
    first = 0.0
    for block in blocks:
        if not size:
            first = time.perf_counter() - started
        size += len(block)
        lines += block.count(b"\n")
    return size, lines, first


def export_over_http(client: httpx.Client, pid: int) -> Export:
    before = memory_mb(pid, "VmRSS")
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(memory_mb(pid, "VmRSS"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    with client.stream("GET", "/api/v1/audit/sessions.csv") as response:
        response.raise_for_status()
        size, lines, first = _drain(response.iter_raw(1 << 16), started)
    seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    done.set()
    sampler.join()
    peak_mb = max(*peak, memory_mb(pid, "VmRSS"))
    return Export(lines - 1, size / 1e6, seconds, first, before, peak_mb, cpu)


_BASELINE_COLUMNS: Final = tuple(SessionOut.model_fields)
"""The baseline's columns: the session's own, which the read model holds as the CSV
prints them, without cell formats (the same columns as every earlier run's baseline)."""
_STORED_COLUMNS: Final = (
    *_BASELINE_COLUMNS, *(c.name for c in session_queries.EXPORT_EVIDENCE),
)  # fmt: skip
"""Every stored column the export reads, for a second, wider baseline."""


def export_with_copy(url: str, names: Sequence[str] = _BASELINE_COLUMNS) -> Export:
    columns = ", ".join(names)
    statement = (
        f"COPY (SELECT {columns} FROM read_sessions ORDER BY started_at DESC, session_id DESC) "
        "TO STDOUT (FORMAT csv, HEADER)"
    )
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        with cursor.copy(statement) as copy:
            size, lines, first = _drain((bytes(block) for block in copy), started)
        seconds = time.perf_counter() - started
    return Export(lines - 1, size / 1e6, seconds, first)


def export_statement_with_copy(engine: Engine, url: str) -> Export:
    """The API's own export statement (evidence subqueries and cell formats in SQL),
    run with bare psycopg: what the database alone costs the API's export."""
    with engine.connect() as connection:
        query = session_queries.session_query(_MANUFACTURER)
        statement, parameters = session_queries.copy_export_statement(connection, query)
    with psycopg.connect(url) as raw, raw.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # as the API runs it
        started = time.perf_counter()
        with cursor.copy(statement, parameters) as copy:
            size, lines, first = _drain((bytes(block) for block in copy), started)
        seconds = time.perf_counter() - started
    return Export(lines, size / 1e6, seconds, first)


def serve(
    url: str, log: IO[bytes], tree: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``coreline api`` process on a free port, answering; its output goes to ``log``;
    ``tree``: the checkout whose code it runs (default: this one)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CORELINE_")}
    if tree is not None:
        environment["PYTHONPATH"] = str(tree)
    # Nothing listens on the broker's port: only readiness asks, and it is not measured.
    environment |= {"CORELINE_DATABASE_URL": url,
                    "CORELINE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "api", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=tree,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a loaded machine starts it slowly
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                log.seek(0)
                raise RuntimeError(f"the API did not start:\n{log.read().decode()}") from None
        time.sleep(0.2)


def _ms(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f} ms"


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def report(
    fleet: Fleet,
    results: list[Latencies],
    http: Export,
    copy: Export,
    stored: Export,
    own: Export,
) -> None:
    rows = []
    for result in results:
        p99 = percentile(result.api, 0.99)
        rows.append((
            result.name, _ms(result.api), _ms(result.in_process), _ms(result.psycopg),
            f"{percentile(result.api, 0.5) / percentile(result.psycopg, 0.5):.1f}x",
            f"{result.api_cpu_ms:.2f} ms",
            "met" if p99 <= TARGET_P99_MS else "MISSED",
        ))  # fmt: skip
    print_table(
        f"API latency over {len(fleet.device_ids):,} devices and {fleet.sessions:,} sessions, "
        f"{len(results[0].api)} requests each, page {PAGE} ({machine()}, load {_load()})",
        ("request", "API p50 / p99", "in-process p50 / p99", "psycopg p50 / p99",
         "API ÷ psycopg (p50)", "API CPU / request", "p99 ≤ 100 ms"),
        rows,
    )  # fmt: skip
    print_table(
        f"CSV export of every session ({http.rows:,} rows, {http.megabytes:,.0f} MB, "
        f"load {_load()})",
        ("", "rows/s", "MB/s", "first byte", "total", "API process RSS before → peak",
         "API CPU / 1,000 rows"),
        [
            ("coreline API (streamed)", f"{http.rate:,.0f}", f"{http.megabytes / http.seconds:.1f}",
             f"{http.first_byte:.2f} s", f"{http.seconds:.1f} s",
             f"{http.rss_before_mb:.0f} → {http.rss_peak_mb:.0f} MB",
             f"{http.cpu_s / http.rows * 1e6:.1f} ms"),
            ("COPY (SELECT …) TO STDOUT", f"{copy.rate:,.0f}",
             f"{copy.megabytes / copy.seconds:.1f}", f"{copy.first_byte:.2f} s",
             f"{copy.seconds:.1f} s", "", ""),
            (f"COPY of the {len(_STORED_COLUMNS)} stored columns it reads",
             f"{stored.rate:,.0f}",
             f"{stored.megabytes / stored.seconds:.1f}", f"{stored.first_byte:.2f} s",
             f"{stored.seconds:.1f} s", "", ""),
            ("the API's own COPY statement, bare psycopg", f"{own.rate:,.0f}",
             f"{own.megabytes / own.seconds:.1f}", f"{own.first_byte:.2f} s",
             f"{own.seconds:.1f} s", "", ""),
            ("API ÷ COPY", f"{http.rate / copy.rate:.0%}", "", "", "", "", ""),
            ("API ÷ its own statement in bare psycopg", f"{http.rate / own.rate:.0%}",
             "", "", "", "", ""),
        ],
    )  # fmt: skip


@dataclass
class Turns:
    """One API process's share of an A/B run, per request kind."""

    name: str
    pid: int
    client: httpx.Client
    cpu_ms: dict[str, list[float]]
    latencies: dict[str, list[float]]


def _timed_in_order(items: Sequence[T], run: Callable[[T], object]) -> list[float]:
    """Milliseconds per call, no warm-up (the turns warm up once)."""
    latencies = []
    for item in items:
        started = time.perf_counter()
        run(item)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def take_turns(kinds: list[tuple[str, list[Request]]], sides: Sequence[Turns], rounds: int) -> None:
    """Each kind's requests on each side in turn, the order swapped every round."""

    def over_http(side: Turns) -> Callable[[Request], object]:
        def get(request: Request) -> object:
            response = side.client.get(request.path, params=request.params)
            response.raise_for_status()
            return response.content

        return get

    # Both warm (every statement prepared, every route built), answering alike.
    for name, requests in kinds:
        for request in requests[:_WARM_UP]:
            bodies = {over_http(side)(request) for side in sides}
            if len(bodies) > 1:
                raise RuntimeError(f"{name}: the two trees answer {request} differently")
    for number in range(rounds):
        for name, requests in kinds:
            for side in sides if number % 2 == 0 else list(reversed(sides)):
                cpu = cpu_seconds(side.pid)
                latencies = _timed_in_order(requests, over_http(side))
                spent = (cpu_seconds(side.pid) - cpu) / len(requests) * 1000
                side.cpu_ms.setdefault(name, []).append(spent)
                side.latencies.setdefault(name, []).extend(latencies)


def report_turns(fleet: Fleet, before: Turns, after: Turns, rounds: int, load: str) -> None:
    rows = []
    for name in before.cpu_ms:
        old, new = statistics.median(before.cpu_ms[name]), statistics.median(after.cpu_ms[name])
        rows.append((
            name, f"{old:.2f} → {new:.2f} ms", f"{new / old:.2f}",
            _ms(sorted(before.latencies[name])), _ms(sorted(after.latencies[name])),
        ))  # fmt: skip
    print_table(
        f"A/B over {len(fleet.device_ids):,} devices and {fleet.sessions:,} sessions, "
        f"{rounds} rounds, {len(before.latencies[rows[0][0]]) // rounds} requests a kind a "
        f"round ({machine()}, load {load} at the start, {_load()} at the end)",
        ("request", f"API CPU / request (median round), {before.name} → {after.name}",
         "ratio", f"{before.name} p50 / p99", f"{after.name} p50 / p99"),
        rows,
    )  # fmt: skip


def _load() -> str:
    """The machine's one-minute load average: other work skews wall-clock figures."""
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--clinics", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="per kind of request")
    parser.add_argument(
        "--against", type=Path, help="a checkout to serve beside this one, in turns (A/B)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds (with --against)")
    parser.add_argument(
        "--only", help="A/B only the request kinds whose name contains this (with --against)"
    )
    arguments = parser.parse_args()
    rng = random.Random(5)
    count = arguments.requests
    sampled = set(rng.sample(range(arguments.sessions // 10, arguments.sessions), count))
    # The API's output, kept only to explain a failed start: nothing is left behind.
    with TemporaryPostgres(durable=True) as server, tempfile.TemporaryFile() as log:
        url = server.create_database("coreline")
        upgrade_schema(url)
        read_models = ReadModelStore(url)  # creates the read-model tables
        engine = read_models.engine
        fleet = load_fleet(url, arguments.devices, arguments.clinics, arguments.sessions, sampled)
        rows = arguments.devices + arguments.sessions
        print(f"loaded {arguments.devices:,} devices and {arguments.sessions:,} sessions in "
              f"{fleet.load_seconds:.0f} s ({rows / fleet.load_seconds:,.0f} rows/s, "
              "VACUUM ANALYZE included)")  # fmt: skip
        _, token = create_token(engine, Role.MANUFACTURER, label="bench")
        if arguments.against is not None:
            read_models.close()
            kinds = [
                (name, requests)
                for name, requests in request_kinds(fleet, count, rng)
                if arguments.only is None or arguments.only in name
            ]
            compare(url, token, fleet, kinds, arguments)
            return
        process, base = serve(url, log)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                results = [
                    measure(name, requests, client, engine, url, process.pid)
                    for name, requests in request_kinds(fleet, count, rng)
                ]
                http = export_over_http(client, process.pid)
            copy = export_with_copy(url)
            stored = export_with_copy(url, _STORED_COLUMNS)
            own = export_statement_with_copy(engine, url)
        finally:
            process.terminate()
            process.wait(timeout=30)
            read_models.close()
    report(fleet, results, http, copy, stored, own)


def compare(
    url: str,
    token: str,
    fleet: Fleet,
    kinds: list[tuple[str, list[Request]]],
    arguments: argparse.Namespace,
) -> None:
    """This tree's API against ``arguments.against``'s, on one database, in turns."""
    load = _load()
    headers = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryFile() as log_before, tempfile.TemporaryFile() as log_after:
        old, old_base = serve(url, log_before, arguments.against)
        try:
            new, new_base = serve(url, log_after)
            try:
                with (
                    httpx.Client(base_url=old_base, headers=headers, timeout=600) as old_client,
                    httpx.Client(base_url=new_base, headers=headers, timeout=600) as new_client,
                ):
                    before = Turns(arguments.against.name, old.pid, old_client, {}, {})
                    after = Turns("this tree", new.pid, new_client, {}, {})
                    take_turns(kinds, (before, after), arguments.rounds)
            finally:
                new.terminate()
                new.wait(timeout=30)
        finally:
            old.terminate()
            old.wait(timeout=30)
    report_turns(fleet, before, after, arguments.rounds, load)


if __name__ == "__main__":
    main()
