"""Alert events into ``read_alerts`` and ``read_alert_history`` (DESIGN §8).

One row per alert, saying what it says now: the rule and severity of the highest
needle-life rung it has reached (``alert.escalated``), its state, and the times of
each on one clock, the platform's receive time (the events' ``occurred_at``), with
the device's time beside it.  One history row per raise, escalation,
acknowledgement and resolution, so the alert's detail shows every rung with its time.

Stores written before the ladder hold parallel needle-life alerts of one cartridge:
an ``alert.raised`` on a needle-life rule while an alert of the same device and
cartridge is open.  ``coreline replay`` folds every alert event with one
``AlertRows`` from the start, so it sees that and merges the later alert into the
open one as a rung of its history; the merged alert's acknowledgements count for
the one it joined (someone is on the cartridge), its resolution does not (the
engine resolved all of a cartridge's alerts together; the open one's own resolution
closes it).  The live projector needs no such memory across batches: its engine
never raises a second needle-life alert for an open one.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.alerts import ladder
from services.projections.facts import parse_timestamp
from services.projections.read_store import ReadModelUpdate


@dataclass(frozen=True, slots=True)
class AlertEventRow:
    """The parts of a stored alert event the rows are built from."""

    event_id: str
    alert_id: str
    device_id: str
    seq: int
    type: str
    at: datetime
    data: dict[str, Any]


@dataclass(slots=True)
class AlertRows:
    open_ladders: dict[tuple[str, str], str] = field(default_factory=dict)
    """(device, cartridge) → its open needle-life alert, as far as this fold has seen."""
    rung_reached: dict[str, int] = field(default_factory=dict)
    raised_rung: dict[str, int] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    """A parallel needle-life alert → the alert of its cartridge it was merged into."""

    def fold(self, event: AlertEventRow, update: ReadModelUpdate) -> None:
        data, at = event.data, event.at
        alert_id = self.merged.get(event.alert_id, event.alert_id)
        device_time = _moment(data.get("device_time"))
        if event.type == "alert.raised" and event.seq == 1:
            self._raised(event, device_time, update)
            return
        if event.type == "alert.raised":  # raised again: what it says now; state stays
            update.alert_changes.append((alert_id, {
                "severity": data["severity"], "message": data["message"],
                "context": data.get("context", {}), "last_seq": event.seq,
            }))  # fmt: skip
            return
        columns: dict[str, Any]
        if event.type == "alert.escalated":
            self.rung_reached[alert_id] = ladder.rung(data["rule"])
            columns = _escalation(data, at)
            self._history(update, event, alert_id, "escalated", data, device_time)
        elif event.type == "alert.acknowledged":
            columns = {"status": "acknowledged", "acknowledged_at": at,
                       "acknowledged_by": data["by"], "note": data.get("note")}  # fmt: skip
            self._history(update, event, alert_id, "acknowledged", data, None)
        elif event.type == "alert.resolved":
            if alert_id != event.alert_id:
                return  # a merged alert's resolution: the one it joined resolves itself
            columns = {"status": "resolved", "resolved_at": at, "resolved_by": data["by"],
                       "note": data.get("note")}  # fmt: skip
            self._history(update, event, alert_id, "resolved", data, None)
            self._close(alert_id)
        else:
            return
        if alert_id == event.alert_id:
            columns["last_seq"] = event.seq
        update.alert_changes.append((alert_id, columns))

    def _raised(
        self, event: AlertEventRow, device_time: datetime | None, update: ReadModelUpdate
    ) -> None:
        data = event.data
        rule, subject = data["rule"], data["subject"]
        key = (event.device_id, subject)
        joined = self.open_ladders.get(key) if ladder.on_ladder(rule) else None
        if joined is not None and joined != event.alert_id:
            # Parallel alerts of one batch may come in any order: each is a rung above
            # the raise; only one above every rung reached moves the alert.
            self.merged[event.alert_id] = joined
            if ladder.rung(rule) > self.rung_reached.get(joined, -1):
                self.rung_reached[joined] = ladder.rung(rule)
                update.alert_changes.append((joined, _escalation(data, event.at)))
            above = ladder.rung(rule) > self.raised_rung.get(joined, -1)
            kind = "escalated" if above else "raised"
            self._history(update, event, joined, kind, data, device_time)
            return
        if ladder.on_ladder(rule):
            self.open_ladders[key] = event.alert_id
            self.rung_reached[event.alert_id] = ladder.rung(rule)
            self.raised_rung[event.alert_id] = ladder.rung(rule)
        update.alerts_raised.append({
            "alert_id": event.alert_id, "device_id": event.device_id,
            "clinic_id": data["clinic_id"], "rule": rule, "subject": subject,
            "severity": data["severity"], "status": "open", "message": data["message"],
            "context": data.get("context", {}), "raised_at": event.at,
            "device_time": device_time, "escalated_at": None, "last_seq": event.seq,
        })  # fmt: skip
        self._history(update, event, event.alert_id, "raised", data, device_time)

    def _close(self, alert_id: str) -> None:
        for key in [key for key, open_id in self.open_ladders.items() if open_id == alert_id]:
            del self.open_ladders[key]

    @staticmethod
    def _history(
        update: ReadModelUpdate,
        event: AlertEventRow,
        alert_id: str,
        kind: str,
        data: dict[str, Any],
        device_time: datetime | None,
    ) -> None:
        update.alert_history.append({
            "event_id": event.event_id, "alert_id": alert_id, "from_alert_id": event.alert_id,
            "seq": event.seq, "kind": kind, "rule": data.get("rule"),
            "severity": data.get("severity"), "at": event.at, "device_time": device_time,
            "by": data.get("by"), "note": data.get("note"),
        })  # fmt: skip


def _escalation(data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A higher rung re-opens attention: the alert is open again, and what a person
    did about a lower rung stays in its history only."""
    return {
        "rule": data["rule"], "severity": data["severity"], "message": data["message"],
        "context": data.get("context", {}), "escalated_at": at, "status": "open",
        "acknowledged_at": None, "acknowledged_by": None, "resolved_at": None,
        "resolved_by": None,
    }  # fmt: skip


def _moment(text: object) -> datetime | None:
    return parse_timestamp(text) if isinstance(text, str) else None
