#!/bin/bash
# InfluxDB 2.x first start (docker-entrypoint-initdb.d): the v1 database/retention mapping for
# the setup bucket (InfluxQL: zhizao's reader, the API, Grafana), a v1 user that writes (ingest,
# KPI engine) and a read-only InfluxQL user (Grafana, the API).
set -euo pipefail
bucket_id="$(influx bucket list --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)"
influx v1 dbrp create --db "$INFLUX_DATABASE" --rp autogen --bucket-id "$bucket_id" --default
influx v1 auth create --username "$INFLUX_WRITER_USER" --password "$INFLUX_WRITER_PASSWORD" \
  --read-bucket "$bucket_id" --write-bucket "$bucket_id"
influx v1 auth create --username "$INFLUX_READER_USER" --password "$INFLUX_READER_PASSWORD" \
  --read-bucket "$bucket_id"
