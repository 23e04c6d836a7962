"""The demo's live terminal summary, read from the same database the API reads."""

from dataclasses import dataclass

from rich.table import Table
from sqlalchemy import Engine, text


@dataclass(frozen=True, slots=True)
class Snapshot:
    events: int
    devices: int
    online: int
    sessions: int
    sessions_ended: int
    reconciled: int
    alerts_open: int
    alerts_total: int
    needle_alerts: int
    by_status: dict[str, int]
    webhooks_delivered: int
    dead_letters: int
    interlocks_engaged: int


_QUERIES = {
    "events": "SELECT count(*) FROM events",
    "devices": "SELECT count(*) FROM read_devices",
    "online": "SELECT count(*) FROM presence WHERE online",
    "sessions": "SELECT count(*) FROM read_sessions",
    "sessions_ended": "SELECT count(*) FROM read_sessions WHERE ended_at IS NOT NULL",
    "reconciled": "SELECT count(*) FROM read_sessions WHERE reconciled",
    "alerts_open": "SELECT count(*) FROM read_alerts WHERE status != 'resolved'",
    "alerts_total": "SELECT count(*) FROM read_alerts",
    "needle_alerts": "SELECT count(*) FROM read_alerts WHERE rule LIKE 'needle%'",
    "webhooks_delivered": "SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'",
    "dead_letters": "SELECT count(*) FROM dead_letters",
    "interlocks_engaged": "SELECT count(*) FROM events WHERE type = 'interlock.engaged'",
}


def snapshot(engine: Engine) -> Snapshot:
    with engine.connect() as connection:
        counts = {
            name: int(connection.execute(text(sql)).scalar_one()) for name, sql in _QUERIES.items()
        }
        by_status: dict[str, int] = dict(
            connection.execute(
                text("SELECT status, count(*) FROM read_devices GROUP BY status ORDER BY 2 DESC")
            ).all()
        )
    return Snapshot(**counts, by_status=by_status)


def render(shot: Snapshot, elapsed_s: float, simulated: str) -> Table:
    table = Table(title=f"Coreline demo · {elapsed_s:,.0f} s · simulated clock {simulated}")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = (
        ("events stored", f"{shot.events:,}"),
        ("devices online", f"{shot.online} / {shot.devices}"),
        ("status", ", ".join(f"{name} {count}" for name, count in shot.by_status.items()) or "—"),
        (
            "sessions (ended, reconciled)",
            f"{shot.sessions} ({shot.sessions_ended}, {shot.reconciled})",
        ),
        ("alerts open / raised", f"{shot.alerts_open} / {shot.alerts_total}"),
        ("needle alerts", f"{shot.needle_alerts}"),
        ("interlocks engaged (refusals, warnings)", f"{shot.interlocks_engaged}"),
        ("webhook notices delivered", f"{shot.webhooks_delivered}"),
        ("dead letters", f"{shot.dead_letters}"),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def line(shot: Snapshot, elapsed_s: float) -> str:
    """The summary in one line, for logs and terminals that cannot redraw."""
    return (
        f"{elapsed_s:5.0f} s: {shot.events:,} events, {shot.online}/{shot.devices} online, "
        f"{shot.sessions} sessions ({shot.reconciled} reconciled), "
        f"{shot.alerts_total} alerts ({shot.alerts_open} open, {shot.needle_alerts} needle), "
        f"{shot.webhooks_delivered} webhook notices, {shot.dead_letters} dead letters, "
        f"{shot.interlocks_engaged} interlocks engaged"
    )
