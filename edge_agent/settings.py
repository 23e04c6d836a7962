"""The agent's configuration from ``CORELINE_*`` variables (DESIGN §10).

Kept apart from the platform's settings so a handpiece never loads the database
stack: the agent's resident memory is a product requirement.
"""

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field

from transport import MqttSettings


class AgentSettings(MqttSettings):
    outbox_path: Path = Path("coreline-outbox.db")
    outbox_budget_mb: Annotated[int, Field(ge=1)] = 256
    outbox_resend_window_h: Annotated[float, Field(gt=0)] = 168.0

    @property
    def outbox_resend_window(self) -> timedelta:
        return timedelta(hours=self.outbox_resend_window_h)
