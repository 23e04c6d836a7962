"""Which MQTT version to speak: 5 where the broker has it, 3.1.1 where it does not.

Decided from how connection attempts end, in one place for every Coreline client.
A broker that lacks 5 either refuses the CONNECT with a protocol error, or closes
the socket without answering (an embedded Python broker that cannot parse a
version 5 CONNECT with properties), or never answers at all; paho itself would
wait a whole keep-alive period, and lose what is published meanwhile to a broker
that has no session for us yet.  Until a broker has answered once, every such
ending switches to the other version; after that the version sticks, whatever
happens later (a broker that answered speaks it).
"""

import time
from dataclasses import dataclass, field
from typing import Final

from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

ANSWER_WITHIN_S: Final = 10.0


@dataclass(slots=True)
class VersionProbe:
    answer_within_s: float = ANSWER_WITHIN_S
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    answered: bool = False
    _deadline: float = field(default=0.0, repr=False)

    def attempt_started(self, now: float | None = None) -> None:
        """A CONNECT is on its way: the broker has ``answer_within_s`` to answer."""
        self._deadline = (time.monotonic() if now is None else now) + self.answer_within_s

    def refused(self, reason: ReasonCode) -> bool:
        """On a failed CONNACK: whether to switch (the refusal is about the protocol)."""
        return not self.answered and "protocol" in str(reason).lower()

    def accepted(self) -> None:
        self.answered = True

    def dropped_unanswered(self) -> bool:
        """On a disconnect: whether to switch (no CONNACK ever came)."""
        return not self.answered

    def overdue(self, now: float | None = None) -> bool:
        """Whether to switch now: an attempt is out and unanswered past its time."""
        moment = time.monotonic() if now is None else now
        return not self.answered and self._deadline > 0 and moment > self._deadline

    def switch(self) -> MQTTProtocolVersion:
        self.protocol = (
            MQTTProtocolVersion.MQTTv311
            if self.protocol == MQTTProtocolVersion.MQTTv5
            else MQTTProtocolVersion.MQTTv5
        )
        self._deadline = 0.0
        return self.protocol

    @property
    def is_v5(self) -> bool:
        return self.protocol == MQTTProtocolVersion.MQTTv5
