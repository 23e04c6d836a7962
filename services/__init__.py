"""Coreline services: event store, projections, alerting, API and the command line."""
