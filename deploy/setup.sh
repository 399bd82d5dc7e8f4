#!/usr/bin/env bash
# Idempotent set-up for a Debian/Ubuntu machine: the servers the tests and the demo start
# themselves (Mosquitto, InfluxDB 1.x, VictoriaMetrics) and a virtual environment with zhizao and
# its dev tools. Safe to run again: it only installs what is missing.
#
#   deploy/setup.sh              servers (Debian packages) and the virtual environment
#   deploy/setup.sh --venv-only  the virtual environment alone (no root, no apt): enough for
#                                `make lint` and `make test-fast`, which start no server
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_ONLY=0
case "${1:-}" in
  "") ;;
  --venv-only) VENV_ONLY=1 ;;
  *) echo "setup: unknown option '$1'; use no option (servers and venv) or --venv-only" >&2; exit 2 ;;
esac

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
APT_PACKAGES=(mosquitto influxdb victoria-metrics postgresql)
# headless Chromium, its driver and a CJK font for the portal's browser tests and screenshots
APT_PACKAGES+=(chromium chromium-driver fonts-wqy-microhei)
# the line-protocol kernel (ingest/_lpkernel.c) is compiled at install: a C compiler and the
# interpreter's headers, only when missing (a pyenv or python.org build ships its own headers)
command -v cc >/dev/null 2>&1 || APT_PACKAGES+=(gcc libc6-dev)
if ! "$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  APT_PACKAGES+=(python3-dev)
fi

# --venv-only installs nothing system-wide: without a C compiler the kernel falls back to numpy
if [ "$VENV_ONLY" -eq 1 ]; then
  APT_PACKAGES=()
fi
need=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # the packages' own services are not wanted: tests and the demo start private instances
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  for svc in mosquitto influxdb victoria-metrics postgresql; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
# reinstall (and recompile the kernel) when the package definition or the C source changes
stamp="$VENV/.installed-$(cat pyproject.toml setup.py ingest/_lpkernel.c | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing zhizao with dev extras into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[dev]"
  "$VENV/bin/python" -c 'import ingest._lpkernel' 2>/dev/null \
    || echo "setup: WARNING: the C line-protocol kernel did not build; the encoder falls back to numpy (about 3x slower)" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
if [ "$VENV_ONLY" -eq 1 ]; then
  echo "setup: ok, virtual environment only ($("$VENV/bin/python" --version))"
  exit 0
fi
echo "setup: ok ($("$VENV/bin/python" --version), $(influxd version 2>/dev/null | head -1), mosquitto $(dpkg-query -W -f='${Version}' mosquitto))"
