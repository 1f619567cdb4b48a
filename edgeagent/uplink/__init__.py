"""The uplink: durable outbox, MQTT client, topic and message schemas."""
