"""``coreline agent``: one real agent, fed by firmware over a line protocol."""

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from edge_agent.agent import Agent
from edge_agent.driver import LinkDriver
from edge_agent.firmware_input import FirmwareLineError, parse_line
from edge_agent.outbox import InvalidReadingError, Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import Heartbeat
from transport import BrokerAddress

log = logging.getLogger(__name__)

_LINES_PER_TURN: Final = 500


@dataclass(slots=True)
class AgentSummary:
    recorded: int = 0
    refused: int = 0
    unsent: int = 0


def run_agent(
    device_id: str,
    outbox: Outbox,
    broker: BrokerAddress,
    lines: Iterable[bytes],
    stop: threading.Event,
    *,
    settings: LinkSettings | None = None,
) -> AgentSummary:
    """Record each firmware line into the outbox and publish, until ``stop`` is set
    or the input ends and every recorded event has been acknowledged."""
    driver = LinkDriver(outbox)
    link = DeviceLink(device_id, outbox, broker, settings, watcher=driver)
    driver.add(link)
    agent = Agent(device_id, outbox, link)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read_lines, args=(lines, inbox), daemon=True).start()
    summary = AgentSummary()
    input_ended = False

    def take_input() -> None:
        nonlocal input_ended
        for _ in range(_LINES_PER_TURN):
            try:
                line = inbox.get_nowait()
            except queue.Empty:
                break
            if line is None:
                input_ended = True
                break
            _take(line.strip(), agent, summary)
        if input_ended and outbox.first_unsent_seq(device_id) is None:
            stop.set()  # all delivered: a piped run ends by itself

    driver.run(stop, between_turns=take_input)
    summary.unsent = outbox.stats().unsent
    return summary


def _take(line: bytes, agent: Agent, summary: AgentSummary) -> None:
    if not line:
        return
    try:
        reading = parse_line(line, agent.device_id)
        if isinstance(reading, Heartbeat):
            agent.heartbeat(reading)
        else:
            agent.report(reading)
            summary.recorded += 1
    except (FirmwareLineError, InvalidReadingError) as error:
        summary.refused += 1
        log.warning("%s: refused a firmware line: %s", agent.device_id, error)


def _read_lines(lines: Iterable[bytes], inbox: "queue.SimpleQueue[bytes | None]") -> None:
    for line in lines:
        if line.strip():
            inbox.put(line)
    inbox.put(None)  # the end of the input
