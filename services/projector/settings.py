"""The projector's configuration: the notifier's settings (it delivers alerts too)
plus where its Prometheus metrics are served."""

from typing import Annotated

from pydantic import Field

from services.delivery.settings import DeliverySettings


class ProjectorSettings(DeliverySettings):
    projector_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9102
    """0 switches /metrics off."""
    projector_metrics_host: str = "127.0.0.1"
    """0.0.0.0 where Prometheus scrapes from another host or container."""
