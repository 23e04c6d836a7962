"""Names of event streams.  A device's own events form the stream named by its id;
platform-recorded events live in streams whose names cannot collide with a device id
(device ids never contain ``:``)."""


def device_stream(device_id: str) -> str:
    return device_id


def registry_stream(device_id: str) -> str:
    return f"registry:{device_id}"


def alert_stream(alert_id: str) -> str:
    return f"alert:{alert_id}"


def is_device_stream(stream_id: str) -> bool:
    return ":" not in stream_id
