"""Observability: event store, metrics, crash handler, health, alerts, leak monitor."""
