#!/usr/bin/env bash
# Tools the tests drive, from Debian's packages (nothing is downloaded from elsewhere):
# - chromium at /usr/bin/chromium, for the browser tests (Playwright's executable_path);
# - a Compose CLI (the docker compose plugin, else Debian's docker-compose) for
#   tests/test_compose.py, which validates docker-compose.yaml (no engine is needed).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian's ${missing[*]} for the tests..."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
test -x /usr/bin/chromium
