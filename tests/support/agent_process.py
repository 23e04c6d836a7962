"""A real agent process for crash tests: records ``--events`` events at a steady
rate into its outbox while publishing, then keeps publishing until SIGTERM.

    python -m tests.support.agent_process DEVICE OUTBOX MQTT_URL --events N --rate R

``--anchor-wait`` is how long a fresh outbox waits for the platform's retained ack
(short: these brokers have no platform behind them).
"""

import argparse
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from tests.support.streams import punch_data
from transport import BrokerAddress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("device_id")
    parser.add_argument("outbox", type=Path)
    parser.add_argument("mqtt_url")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--anchor-wait", type=float, default=0.5)
    args = parser.parse_args()

    outbox = Outbox(args.outbox)
    driver = LinkDriver(outbox)
    broker = BrokerAddress.parse(args.mqtt_url)
    settings = LinkSettings(linger_s=0.01, anchor_wait_s=args.anchor_wait)
    link = DeviceLink(args.device_id, outbox, broker, settings, watcher=driver)
    driver.add(link)
    agent = Agent(args.device_id, outbox, link)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()

    def record_due() -> None:
        due = min(args.events, int((time.monotonic() - started) * args.rate))
        for seq in range(outbox.head(args.device_id)[0] + 1, due + 1):
            agent.report(DeviceReading("cores.punched", datetime.now(UTC), punch_data(seq)))

    driver.run(stop, between_turns=record_due)
    outbox.close()


if __name__ == "__main__":
    main()
