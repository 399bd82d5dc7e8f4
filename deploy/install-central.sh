#!/usr/bin/env bash
# Install zhizao's central services without containers on a Debian/Ubuntu host:
#   * system user `zhizao`, virtual environment /opt/zhizao/venv with zhizao[ingest,analytics,api]
#   * /etc/zhizao/{ingest,kpi,api}.yaml from the samples (never overwritten) and
#     /etc/zhizao/api.env with a generated bootstrap admin token; files holding secrets are 0600
#     (api.env, root-only: systemd reads it) or 0640 root:zhizao
#   * systemd units zhizao-ingest, zhizao-kpi, zhizao-api (enabled; started only with --start);
#     state in /var/lib/zhizao-{ingest,kpi,api}
# Ingest rotates its quarantine file itself (quarantine.max_file_bytes x max_files, read back by
# `zhizao ingest quarantine list/replay`), so no logrotate rule touches it.
#
# Usage: sudo deploy/install-central.sh [--dry-run] [--wheel FILE] [--etc DIR] [--configs-only]
#                                       [--start]
# --dry-run prints every command instead of running it (works without root); --configs-only
# writes only the configuration files (into --etc DIR, e.g. to review them first).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/zhizao
ETC=/etc/zhizao
UNIT_DIR=/etc/systemd/system
DRY=0
WHEEL=""
START=0
CONFIGS_ONLY=0
SERVICES=(ingest kpi api)

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --wheel) WHEEL="$2"; shift ;;
    --etc) ETC="$2"; shift ;;
    --configs-only) CONFIGS_ONLY=1 ;;
    --start) START=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install-central: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

run() {
  if [ "$DRY" -eq 1 ]; then echo "+ $*"; else "$@"; fi
}

owner=()
if [ "$(id -u)" -eq 0 ] && getent group zhizao >/dev/null; then owner=(-o root -g zhizao); fi

write_configs() {
  umask 077
  run install -d -m 0750 "${owner[@]}" "$ETC"
  local src
  for svc in "${SERVICES[@]}"; do
    case "$svc" in
      ingest) src="$SRC_DIR/ingest/ingest.sample.yaml" ;;
      kpi) src="$SRC_DIR/analytics/kpi.sample.yaml" ;;
      api) src="$SRC_DIR/api/api.sample.yaml" ;;
    esac
    if [ -e "$ETC/$svc.yaml" ]; then
      echo "install-central: keeping existing $ETC/$svc.yaml"
    else
      run install -m 0640 "${owner[@]}" "$src" "$ETC/$svc.yaml"
      # each service writes only its own state directory (the unit's ReadWritePaths)
      run sed -i "s#/var/lib/zhizao/#/var/lib/zhizao-$svc/#g" "$ETC/$svc.yaml"
    fi
  done
  if [ -e "$ETC/api.env" ]; then
    echo "install-central: keeping existing $ETC/api.env"
  elif [ "$DRY" -eq 1 ]; then
    echo "+ (write $ETC/api.env 0600 with a random ZHIZAO_API_BOOTSTRAP_ADMIN_TOKEN)"
  else
    token="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    (umask 077 && printf 'ZHIZAO_API_BOOTSTRAP_ADMIN_TOKEN=%s\n' "$token" > "$ETC/api.env")
    chmod 0600 "$ETC/api.env"
    echo "install-central: bootstrap admin token in $ETC/api.env (root only); replace it with"
    echo "  zhizao api token create --role admin ... and remove it from api.env"
  fi
}

if [ "$CONFIGS_ONLY" -eq 1 ]; then
  write_configs
  exit 0
fi
if [ "$DRY" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-central: run as root (sudo), or with --dry-run to see what it would do" >&2
  exit 1
fi

run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3 python3-venv python3-pip ca-certificates
if ! id -u zhizao >/dev/null 2>&1; then
  run useradd --system --no-create-home --home-dir /var/lib/zhizao --shell /usr/sbin/nologin zhizao
fi
run install -d -m 0755 "$PREFIX"
run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --quiet --upgrade pip
target="${WHEEL:-$SRC_DIR}"
run "$PREFIX/venv/bin/pip" install --quiet "zhizao[ingest,analytics,api] @ file://$(realpath "$target")"
write_configs
for svc in "${SERVICES[@]}"; do
  run install -m 0644 "$SRC_DIR/deploy/systemd/zhizao-$svc.service" "$UNIT_DIR/zhizao-$svc.service"
done
run systemctl daemon-reload
for svc in "${SERVICES[@]}"; do
  run systemctl enable "zhizao-$svc.service"
  if [ "$START" -eq 1 ]; then run systemctl restart "zhizao-$svc.service"; fi
done
echo "install-central: done. Edit $ETC/*.yaml (state: /var/lib/zhizao-<service>), then start."
