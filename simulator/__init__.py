"""Demonstration-factory simulator (OPC UA + MQTT) with ground truth. Never imported by production code."""
