"""The operator's egress allow-list, ``CORELINE_EGRESS_ALLOW``, read and checked when
a process starts (a bad entry stops it with a message naming the entry)."""

from typing import Annotated

from pydantic import AfterValidator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.egress.policy import AllowList, parse_allow_list


def _readable(text: str) -> str:
    parse_allow_list(text)  # raises a ValueError that names the bad entry
    return text


class EgressSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    egress_allow: Annotated[str, AfterValidator(_readable)] = ""
    """Comma-separated networks (``10.20.0.0/16``), addresses and host names that
    outbound calls may reach although they are not public, e.g. an internal alert
    relay.  Empty: the public internet only."""

    def allow_list(self) -> AllowList:
        return parse_allow_list(self.egress_allow)
