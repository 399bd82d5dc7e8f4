#!/bin/sh
# Build Mosquitto's password file from the environment (.env), private to the broker, then run it.
set -eu
umask 077
f=/mosquitto/data/passwd
: > "$f"
mosquitto_passwd -b "$f" "$MQTT_INGEST_USER" "$MQTT_INGEST_PASSWORD"
for pair in $MQTT_GATEWAYS; do
  mosquitto_passwd -b "$f" "${pair%%:*}" "${pair#*:}"
done
chown mosquitto:mosquitto "$f" 2>/dev/null || true
exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
