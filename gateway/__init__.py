"""Gateway: the MQTT door into the event store (decode, validate, append, acknowledge)."""
