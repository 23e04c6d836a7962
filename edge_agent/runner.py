"""``coreline agent``: one real agent, fed by firmware over a line protocol."""

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from edge_agent.agent import Agent
from edge_agent.batches import Sealer
from edge_agent.control import DeviceControl
from edge_agent.driver import LinkDriver
from edge_agent.firmware_input import FirmwareLineError, interlock_answers, parse_line
from edge_agent.outbox import InvalidReadingError, Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import Heartbeat
from transport import BrokerAddress

log = logging.getLogger(__name__)

_LINES_PER_TURN: Final = 500
_ACK_GRACE_S: Final = 3.0
"""How long a piped run whose events are all sent waits for the platform to
acknowledge them (it publishes acks about once a second), where the platform acks
at all; what is left unacknowledged goes again on the next start."""
_READ_CHUNK: Final = 64 * 1024


@dataclass(slots=True)
class AgentSummary:
    recorded: int = 0
    refused: int = 0
    interlocked: int = 0
    """Readings a safety interlock refused (the firmware was told on ``answers``)."""
    unsent: int = 0
    unacknowledged: int = 0


def run_agent(  # noqa: PLR0913 - the agent's collaborators, each optional
    device_id: str,
    outbox: Outbox,
    broker: BrokerAddress,
    lines: Iterable[bytes],
    stop: threading.Event,
    *,
    settings: LinkSettings | None = None,
    signer: Sealer | None = None,
    answers: Callable[[bytes], None] | None = None,
    upkeep: Callable[[], None] | None = None,
) -> AgentSummary:
    """Record each firmware line into the outbox and publish, until ``stop`` is set
    or the input ends and every recorded event has been acknowledged; ``upkeep``
    runs between turns (the device's certificate renewal, which must not block)."""
    driver = LinkDriver(outbox)
    link = DeviceLink(device_id, outbox, broker, settings, watcher=driver, sealer=signer)
    driver.add(link)
    agent = Agent(device_id, outbox, link)
    # Desired configuration and tracked commands; lock, unlock and override go to
    # the same interlocks the firmware's readings pass.
    link.control = DeviceControl(device_id, outbox, interlocks=agent.interlocks)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read_lines, args=(lines, inbox), daemon=True).start()
    summary = AgentSummary()
    input_ended = False
    sent_at: float | None = None

    def take_input() -> None:
        nonlocal input_ended, sent_at
        if upkeep is not None:
            upkeep()
        for _ in range(_LINES_PER_TURN):
            try:
                line = inbox.get_nowait()
            except queue.Empty:
                break
            if line is None:
                input_ended = True
                break
            _take(line.strip(), agent, summary, answers)
        if input_ended and _all_sent(outbox, link):
            sent_at = sent_at or time.monotonic()
            if _settled(outbox, link, time.monotonic() - sent_at):
                stop.set()  # a piped run ends by itself

    driver.run(stop, between_turns=take_input)
    stats = outbox.stats()
    summary.unsent, summary.unacknowledged = stats.unsent, stats.unacknowledged
    return summary


def _all_sent(outbox: Outbox, link: DeviceLink) -> bool:
    """Everything recorded is with the broker (an empty outbox needs no anchor)."""
    if outbox.first_unsent_seq(link.device_id) is not None:
        return False
    return link.anchored or outbox.delivery_state(link.device_id).head_seq == 0


def _settled(outbox: Outbox, link: DeviceLink, waited_s: float) -> bool:
    """Acknowledged too, or the platform is not acking (a v1 platform), or it has
    had its grace."""
    state = outbox.delivery_state(link.device_id)
    return state.unacknowledged == 0 or not link.platform_acks or waited_s >= _ACK_GRACE_S


def _take(
    line: bytes, agent: Agent, summary: AgentSummary, answers: Callable[[bytes], None] | None
) -> None:
    if not line:
        return
    try:
        reading = parse_line(line, agent.device_id)
        if isinstance(reading, Heartbeat):
            agent.heartbeat(reading)
            return
        verdict = agent.report(reading)
        if agent.link.control is not None:
            agent.link.control.saw(reading)
        summary.recorded += 1 if verdict.admitted else 0
        if not verdict.admitted:
            summary.interlocked += 1
            log.warning("%s: %s refused: %s", agent.device_id, reading.type, verdict.reason)
        if answers is not None:
            for answer in interlock_answers(reading, verdict):
                answers(answer)
    except (FirmwareLineError, InvalidReadingError) as error:
        summary.refused += 1
        log.warning("%s: refused a firmware line: %s", agent.device_id, error)


def _read_lines(lines: Iterable[bytes], inbox: "queue.SimpleQueue[bytes | None]") -> None:
    for line in _unbuffered(lines):
        if line.strip():
            inbox.put(line)
    inbox.put(None)  # the end of the input


def _unbuffered(lines: Iterable[bytes]) -> Iterable[bytes]:
    """Standard input read from its descriptor, not through its buffered reader.

    This thread is a daemon blocked in a read until the input ends; were it inside
    ``sys.stdin.buffer``, it would hold the reader's lock when the interpreter
    finalizes after Ctrl-C, and Python aborts ("could not acquire lock for
    <stdin> at interpreter shutdown").  ``os.read`` holds no Python lock."""
    fileno = getattr(lines, "fileno", None)
    if fileno is None:
        return lines
    try:
        descriptor = fileno()
    except OSError:
        return lines  # a file-like object without a descriptor (tests pass BytesIO)
    return _split_lines(descriptor)


def _split_lines(descriptor: int) -> Iterator[bytes]:
    pending = b""
    while chunk := os.read(descriptor, _READ_CHUNK):
        *complete, pending = (pending + chunk).split(b"\n")
        yield from (line + b"\n" for line in complete)
    if pending:
        yield pending
