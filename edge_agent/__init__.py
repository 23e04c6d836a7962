"""Edge agent: runs beside the handpiece firmware (device port, outbox, link, driver)."""
