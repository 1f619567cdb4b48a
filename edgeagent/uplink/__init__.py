"""The uplink: durable outbox, MQTT client, topic and message schemas."""

from edgeagent.uplink.outbox import AsyncOutbox, Lane, Outbox, OutboxError, OutboxFull, OutboxStats, Record

__all__ = ["AsyncOutbox", "Lane", "Outbox", "OutboxError", "OutboxFull", "OutboxStats", "Record"]
