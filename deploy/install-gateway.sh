#!/usr/bin/env bash
# Install the zhizao edge gateway on a Debian/Ubuntu box (x86_64 or arm64):
#   * system user `zhizao` (no login, no home), state in /var/lib/zhizao (systemd StateDirectory)
#   * virtual environment in /opt/zhizao/venv with zhizao from this checkout (or --wheel FILE)
#   * configuration in /etc/zhizao/gateway.yaml (a commented sample if none exists; never
#     overwritten), OPC UA trust directory /etc/zhizao/trusted
#   * systemd unit zhizao-gateway.service, enabled; started only with --start
#
# Usage: sudo deploy/install-gateway.sh [--dry-run] [--wheel FILE] [--sample opcua|mqtt|sparkplug]
#                                        [--prefix DIR] [--start]
# --dry-run prints every command instead of running it (works without root).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/zhizao
ETC=/etc/zhizao
UNIT_DIR=/etc/systemd/system
DRY=0
WHEEL=""
SAMPLE=opcua
START=0

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --wheel) WHEEL="$2"; shift ;;
    --sample) SAMPLE="$2"; shift ;;
    --prefix) PREFIX="$2"; shift ;;
    --start) START=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-gateway: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

run() {
  if [ "$DRY" -eq 1 ]; then
    echo "+ $*"
  else
    "$@"
  fi
}

arch="$(uname -m)"
case "$arch" in
  x86_64|amd64|aarch64|arm64) ;;
  *) echo "install-gateway: unsupported architecture $arch (x86_64 and arm64 are supported)" >&2; exit 1 ;;
esac
if [ ! -r /etc/os-release ] || ! grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; then
  echo "install-gateway: this script targets Debian/Ubuntu" >&2
  [ "$DRY" -eq 1 ] || exit 1
fi
if [ "$DRY" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-gateway: run as root (sudo), or with --dry-run to see what it would do" >&2
  exit 1
fi
case "$SAMPLE" in opcua|mqtt|sparkplug) ;; *) echo "install-gateway: --sample opcua|mqtt|sparkplug" >&2; exit 2 ;; esac

echo "install-gateway: $arch, prefix $PREFIX, config $ETC"
# python3-venv brings ensurepip; the wheels of numpy, cryptography, etc. exist for both arches
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3 python3-venv python3-pip ca-certificates

if ! id -u zhizao >/dev/null 2>&1; then
  run useradd --system --no-create-home --home-dir /var/lib/zhizao --shell /usr/sbin/nologin zhizao
fi

run install -d -m 0755 "$PREFIX"
run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --quiet --upgrade pip
if [ -n "$WHEEL" ]; then
  run "$PREFIX/venv/bin/pip" install --quiet "$WHEEL"
else
  run "$PREFIX/venv/bin/pip" install --quiet "$SRC_DIR"
fi
run install -d -m 0755 "$PREFIX/share/gateway"
run install -m 0644 "$SRC_DIR/gateway/README.md" "$PREFIX/share/gateway/README.md"

run install -d -m 0750 -o root -g zhizao "$ETC" "$ETC/trusted"
if [ -e "$ETC/gateway.yaml" ]; then
  echo "install-gateway: keeping existing $ETC/gateway.yaml"
else
  run install -m 0640 -o root -g zhizao "$SRC_DIR/gateway/samples/$SAMPLE.yaml" "$ETC/gateway.yaml"
  echo "install-gateway: edit $ETC/gateway.yaml (sample: $SAMPLE), then: systemctl start zhizao-gateway"
fi

run install -m 0644 "$SRC_DIR/deploy/systemd/zhizao-gateway.service" "$UNIT_DIR/zhizao-gateway.service"
run systemctl daemon-reload
run systemctl enable zhizao-gateway.service
if [ "$START" -eq 1 ]; then
  run systemctl restart zhizao-gateway.service
fi
echo "install-gateway: done. Health: zhizao gateway status -c $ETC/gateway.yaml; metrics on the configured port"
