"""The read side of the API: scoped queries over the read models and the event store."""
