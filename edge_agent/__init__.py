"""Edge agent: runs beside the handpiece firmware (device port, simulator, outbox, publisher)."""
