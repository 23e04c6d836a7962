"""The agent's side of the interlocks: readings refused before they reach the chain,
the firmware told why, invalid readings refused before the interlocks count them,
and the state kept in the outbox so a restarted handpiece decides the same."""

from contextlib import closing
from pathlib import Path
from typing import cast

import orjson
import pytest

from edge_agent.agent import Agent
from edge_agent.firmware_input import interlock_answers
from edge_agent.interlock_keeping import keep_state, restore_interlocks
from edge_agent.interlocks import Interlocks
from edge_agent.outbox import InvalidReadingError, Outbox
from edge_agent.publisher import DeviceLink
from schemas.device_config import DeviceSettings, InterlockMode
from tests.unit.test_interlocks import _install, _punch, _remove, _start

DEVICE = "HP-000611"
BLOCKING = DeviceSettings(cartridge_life_mode=InterlockMode.BLOCK, recalled_lots=("LR",))


class _Link:
    """The link's part the agent uses: told when something was recorded."""

    def __init__(self) -> None:
        self.notified = 0

    def notify_recorded(self) -> None:
        self.notified += 1


def _agent(outbox: Outbox, settings: DeviceSettings = BLOCKING) -> Agent:
    interlocks = Interlocks(settings)
    return Agent(DEVICE, outbox, cast(DeviceLink, _Link()), interlocks)


def _types(outbox: Outbox) -> list[str]:
    head = outbox.head(DEVICE)[0]
    return [orjson.loads(entry.wire)["type"] for entry in outbox.between(DEVICE, 1, head)]


def test_refused_readings_never_reach_the_chain(tmp_path: Path) -> None:
    """A recalled install and a punch past a ``block`` rating are not recorded; the
    interlock events are, once, and the firmware is told in one line each."""
    with closing(Outbox(tmp_path / "outbox.db")) as outbox:
        agent = _agent(outbox)
        refused = agent.report(_install("CT-R", "LR"))
        assert not refused.admitted
        answers = interlock_answers(_install("CT-R", "LR"), refused)
        assert [orjson.loads(line) for line in answers] == [
            {"engaged": refused.readings[0].data},
            {"refused": {"type": "cartridge.installed", "interlock": "recalled_lot",
                         "reason": "cartridge CT-R: lot LR is recalled"}},
        ]  # fmt: skip
        agent.report(_install())
        agent.report(_start())
        agent.report(_punch(100))
        blocked = agent.report(_punch(5))
        assert (blocked.admitted, blocked.refused_by) == (False, "cartridge_life")
        assert not agent.report(_punch(5)).admitted
        assert interlock_answers(_punch(100), agent.report(_remove())) == [
            b'{"released":{"interlock":"cartridge_life","by":"cartridge_removed"}}\n'
        ]
        assert _types(outbox) == [
            "interlock.engaged", "cartridge.installed", "session.started", "cores.punched",
            "interlock.engaged", "cartridge.removed", "interlock.released",
        ]  # fmt: skip


def test_an_invalid_reading_is_refused_before_the_interlocks_count_it(tmp_path: Path) -> None:
    """A punch the platform would refuse (no actuations) raises as the outbox would,
    and neither the chain nor the interlocks' counts move."""
    with closing(Outbox(tmp_path / "outbox.db")) as outbox:
        agent = _agent(outbox)
        agent.report(_install())
        before = agent.interlocks.state.to_json()
        broken = _punch(1)
        broken = type(broken)(broken.type, broken.occurred_at, {**broken.data, "actuations": 0})
        with pytest.raises(InvalidReadingError, match=r"cores.punched \(would be seq 2\)"):
            agent.report(broken)
        assert agent.interlocks.state.to_json() == before
        assert _types(outbox) == ["cartridge.installed"]


def test_a_restarted_agent_decides_as_before(tmp_path: Path) -> None:
    """The state kept with the last reading, and a lock recorded after it by a command,
    come back on restart: still locked, the cartridge's count intact."""
    path = tmp_path / "outbox.db"
    with closing(Outbox(path)) as outbox:
        agent = _agent(outbox)
        agent.report(_install())
        agent.report(_start())
        agent.report(_punch(60))
        # As the command handling records it: the answer and the lock, no snapshot.
        outbox.record_many(DEVICE, agent.interlocks.apply_command("lock", {}))
    with closing(Outbox(path)) as reopened:
        restored = restore_interlocks(reopened, DEVICE, BLOCKING)
        assert restored.state.locked
        assert restored.state.cartridge is not None
        assert restored.state.cartridge.actuations == 60
        assert restored.state.lifetime_actuations == 60
        assert restored.admit(_punch(1)).refused_by == "locked"


def test_an_unreadable_kept_state_is_refolded_from_the_outbox(tmp_path: Path) -> None:
    """A kept state that cannot be read is rebuilt from the events the outbox holds."""
    with closing(Outbox(tmp_path / "outbox.db")) as outbox:
        agent = _agent(outbox)
        agent.report(_install())
        agent.report(_punch(30))
        outbox.record_noting(DEVICE, [_punch(10)],
                             lambda connection: keep_state(connection, DEVICE, b"{"))  # fmt: skip
        restored = restore_interlocks(outbox, DEVICE, BLOCKING)
        assert restored.state.lifetime_actuations == 40


def test_answers_are_empty_for_a_reading_simply_recorded() -> None:
    """Nothing is said to the firmware when a reading just goes into the chain."""
    interlocks = Interlocks()
    reading = _install()
    assert interlock_answers(reading, interlocks.admit(reading)) == []
