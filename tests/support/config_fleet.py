"""Agents that only listen: ``--devices`` handpieces in one process (one outbox, one
selector), each with its configuration and command handling and its interlocks,
recording nothing but their answers, until SIGTERM.

    python -m tests.support.config_fleet OUTBOX MQTT_URL --devices N [--first 1]
"""

import argparse
import signal
import threading
from pathlib import Path

from edge_agent.control import DeviceControl, load_settings
from edge_agent.driver import LinkDriver
from edge_agent.interlocks import Interlocks
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from tests.support.fleet_process import device_ids
from transport import BrokerAddress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outbox", type=Path)
    parser.add_argument("mqtt_url")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--first", type=int, default=1)
    args = parser.parse_args()

    outbox = Outbox(args.outbox)
    driver = LinkDriver(outbox)
    broker = BrokerAddress.parse(args.mqtt_url)
    for device_id in device_ids(args.devices, args.first):
        link = DeviceLink(device_id, outbox, broker, LinkSettings(linger_s=0.02), driver)
        interlocks = Interlocks(load_settings(outbox, device_id))
        link.control = DeviceControl(device_id, outbox, interlocks=interlocks)
        driver.add(link)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    driver.run(stop)
    outbox.close()


if __name__ == "__main__":
    main()
