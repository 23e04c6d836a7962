"""``coreline gateway`` configuration: the shared database and broker settings plus
the gateway's own ``CORELINE_GATEWAY_*`` variables."""

from typing import Annotated

from pydantic import Field

from services.settings import Settings


class GatewaySettings(Settings):
    gateway_client_id: str = "coreline-gateway"
    """MQTT client id: the persistent session unacknowledged messages wait in. Give
    each gateway of a shared group its own."""
    gateway_share_group: str | None = None
    gateway_session_expiry_s: Annotated[int | None, Field(ge=1)] = None
    """How long the broker keeps this gateway's session while it is away.  Unset: 24 h
    for a gateway alone (its session holds what arrives while it restarts), 30 s in a
    shared group (a dead member's session keeps receiving its share until it expires;
    the devices republish what that swallowed, DESIGN §4.2)."""
    gateway_metrics_host: str = "127.0.0.1"
    gateway_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9101
    """0 turns the metrics endpoint off."""
    gateway_gap_grace_s: Annotated[float, Field(gt=0)] = 30.0
    gateway_gap_max_attempts: Annotated[int, Field(ge=1)] = 5
