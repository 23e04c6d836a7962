"""Records events into an outbox as fast as it can, forever: killed by crash tests.

python -m tests.support.outbox_writer OUTBOX DEVICE...
"""

import sys
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox
from tests.support.streams import punch_data


def main() -> None:
    outbox = Outbox(Path(sys.argv[1]))
    devices = sys.argv[2:]
    batch = 1
    while True:
        reading = DeviceReading("cores.punched", datetime.now(UTC), punch_data(1))
        outbox.record_fleet({device: [reading] * batch for device in devices})
        batch = batch % 7 + 1  # vary transaction sizes


if __name__ == "__main__":
    main()
