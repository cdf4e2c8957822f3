#!/usr/bin/env bash
# Shared set-up for the demo and the tests: a venv with the project at the locked versions
# (requirements/lock.txt, refreshed by scripts/lock.sh), and redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the project's requirements or the lock changed since the last install.
stamp=.venv/.mab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/lock.txt -nt "$stamp" ]; then
  # The lock pins every package, direct or not: a fresh machine gets the versions the suite passed with.
  .venv/bin/python -m pip install -q -c requirements/lock.txt pip
  .venv/bin/python -m pip install -q -c requirements/lock.txt -e ".[dev,loadtest,otel]"
  touch "$stamp"
fi
