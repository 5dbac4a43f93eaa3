#!/usr/bin/env bash
# Bring a fresh Debian 12 / Raspberry Pi OS Bookworm machine to the point where Sohoa runs:
# Debian packages (when missing, with apt-get as root or through sudo), then the venv .venv
# at the repository root with the project installed in it. Safe to run again: it only does
# what is missing. Usage: scripts/bootstrap.sh [device|fleet|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

# libtesseract5 + tesseract-ocr-osd: the page pipeline asks Tesseract before turning a page.
debs=(python3-venv python3-dev gcc libsane-dev sane-utils libsane1 mosquitto mosquitto-clients libtesseract5 tesseract-ocr-osd)
if [ "$what" = all ]; then
  debs+=(postgresql chromium tesseract-ocr tesseract-ocr-vie poppler-utils fonts-dejavu-core libzbar0 softhsm2 opensc)
fi

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
    echo "Sohoa needs these Debian packages; install them and run again:" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The broker is started by our own scripts on loopback, never as a system service here.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
fi

extras=device,fleet,dev
[ "$what" = device ] && extras=device
[ "$what" = fleet ] && extras=fleet
stamp=.venv/.sohoa-installed-$extras
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
