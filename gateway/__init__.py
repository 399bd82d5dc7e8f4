"""Edge gateway: OPC UA and MQTT sources, tag mapping, durable outbox, uplink, health."""
