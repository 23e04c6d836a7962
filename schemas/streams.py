"""Names of event streams.  A device's own events form the stream named by its id;
platform-recorded events live in streams whose names cannot collide with a device id
(device ids never contain ``:``).

The changes people make (DESIGN §4) have streams of their own, one per thing
changed, each name saying what kind of thing it is, so no clinic id, user id or
token id can ever collide with another or with the fleet's own settings:
``config:fleet``, ``config:clinic:{clinic_id}``, ``identity:user:{user_id}`` and
``identity:token:{token_id}``."""

from typing import Final

CHANGE_STREAM_PREFIXES: Final = ("config:", "identity:")

FLEET_CONFIG_STREAM: Final = "config:fleet"
"""Fleet-wide settings: the manufacturer's bounds on clinic policies."""

CLINIC_CONFIG_PREFIX: Final = "config:clinic:"
MODEL_CONFIG_PREFIX: Final = "config:model:"
DEVICE_CONFIG_PREFIX: Final = "config:device:"
COMMAND_STREAM_PREFIX: Final = "commands:"

CHANGE_DEVICE_ID: Final = "PLATFORM"
"""The envelope's ``device_id`` on change events.  A change to a clinic's policy or
to a token concerns no handpiece, but the envelope (DESIGN §4) needs a device id, so
change events name the platform itself.  Nothing keys them by it: their stream says
what they are about, and folds over devices skip change streams by name."""


def device_stream(device_id: str) -> str:
    return device_id


def registry_stream(device_id: str) -> str:
    return f"registry:{device_id}"


def alert_stream(alert_id: str) -> str:
    return f"alert:{alert_id}"


def clinic_config_stream(clinic_id: str) -> str:
    """A clinic's alert policy and webhooks."""
    return f"{CLINIC_CONFIG_PREFIX}{clinic_id}"


def model_config_stream(model: str) -> str:
    """The desired-configuration layer of one handpiece model."""
    return f"{MODEL_CONFIG_PREFIX}{model}"


def device_config_stream(device_id: str) -> str:
    """The desired-configuration layer of one device (the manufacturer's own)."""
    return f"{DEVICE_CONFIG_PREFIX}{device_id}"


def command_stream(device_id: str) -> str:
    """The tracked commands sent to one device: ``command.issued``, ``command.expired``
    (the device's answers are in its own stream)."""
    return f"{COMMAND_STREAM_PREFIX}{device_id}"


def user_stream(user_id: str) -> str:
    """One person's account: created, role changed, disabled, password reset."""
    return f"identity:user:{user_id}"


def token_stream(token_id: str) -> str:
    """One API token: created, revoked."""
    return f"identity:token:{token_id}"


def is_device_stream(stream_id: str) -> bool:
    return ":" not in stream_id


def is_change_stream(stream_id: str) -> bool:
    return stream_id.startswith(CHANGE_STREAM_PREFIXES)


def change_subject(stream_id: str) -> str:
    """What a change stream is about, e.g. ``clinic:clinic-7``, ``fleet``,
    ``token:3f9a0c1b2d4e``: the stream's name without its family."""
    return stream_id.split(":", 1)[1]


def clinic_of_change_stream(stream_id: str) -> str | None:
    """The clinic whose configuration a change stream holds (``None``: not a clinic's)."""
    if stream_id.startswith(CLINIC_CONFIG_PREFIX):
        return stream_id.removeprefix(CLINIC_CONFIG_PREFIX)
    return None
