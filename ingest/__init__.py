"""Ingest: codecs, validation and quarantine, vectorized line-protocol encoder, InfluxDB client."""
