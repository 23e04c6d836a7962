"""Real agent processes for end-to-end delivery tests: ``--devices`` handpieces in one
process (one outbox file, one selector), each recording ``--events`` punch events at
``--rate`` events/s, then staying connected, quiet, until SIGTERM, so whatever the
platform has not acknowledged is republished.

    python -m tests.support.fleet_process OUTBOX MQTT_URL --devices N --events M --rate R
        [--first 1] [--ack-timeout S]
"""

import argparse
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from tests.support.streams import punch_data
from transport import BrokerAddress


def device_ids(count: int, first: int = 1) -> list[str]:
    return [f"HP-{n:06d}" for n in range(first, first + count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outbox", type=Path)
    parser.add_argument("mqtt_url")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()

    outbox = Outbox(args.outbox)
    driver = LinkDriver(outbox)
    broker = BrokerAddress.parse(args.mqtt_url)
    ids = device_ids(args.devices, args.first)
    links = {
        device_id: DeviceLink(device_id, outbox, broker, LinkSettings(linger_s=0.02), driver)
        for device_id in ids
    }
    for link in links.values():
        driver.add(link)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    # Counted here, not from the chain head: a re-synced outbox moves its head past
    # the platform's, and the agent may record faults of its own.
    recorded = dict.fromkeys(ids, 0)

    def record_due() -> None:
        due = min(args.events, int((time.monotonic() - started) * args.rate))
        readings: dict[str, list[DeviceReading]] = {}
        for device_id in ids:
            if due > recorded[device_id]:
                now = datetime.now(UTC)
                readings[device_id] = [
                    DeviceReading("cores.punched", now, punch_data(seq))
                    for seq in range(recorded[device_id] + 1, due + 1)
                ]
                recorded[device_id] = due
        if readings:
            outbox.record_fleet(readings)
            for device_id in readings:
                links[device_id].notify_recorded()

    driver.run(stop, between_turns=record_due)
    outbox.close()


if __name__ == "__main__":
    main()
