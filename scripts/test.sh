#!/usr/bin/env bash
# Set up and run the tests: lint, types, the import layering, then pytest against a real Redis (the one at
# BANDIT_REDIS_URL or 127.0.0.1:6379 if it answers; else the tests start their own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# The dashboard test drives Debian's Chromium through Playwright (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
# The metrics test scrapes the service with a real Prometheus (Debian's package; its service is not started).
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq prometheus >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p policies -p bandit -p proxy
# The layering contract ([tool.importlinter] in pyproject.toml; docs/design.md draws it).
.venv/bin/lint-imports
exec .venv/bin/pytest -q "$@"
