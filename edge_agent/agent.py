"""The device port of one handpiece: what its firmware (or the simulator) calls."""

from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink
from schemas import Heartbeat


class Agent:
    """Events go to the durable outbox, and so into the chain, before ``report``
    returns; heartbeats go straight to the link (QoS 0, dropped while offline)."""

    def __init__(self, device_id: str, outbox: Outbox, link: DeviceLink) -> None:
        self.device_id = device_id
        self.outbox = outbox
        self.link = link

    def report(self, reading: DeviceReading) -> None:
        self.outbox.record(self.device_id, reading)
        self.link.notify_recorded()

    def heartbeat(self, sample: Heartbeat) -> None:
        self.link.send_heartbeat(sample)
