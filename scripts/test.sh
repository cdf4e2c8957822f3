#!/usr/bin/env bash
# Set up and run the tests: lint, then pytest against a real Redis (the one at
# BANDIT_REDIS_URL or 127.0.0.1:6379 if it answers; else the tests start their own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p policies -p bandit -p proxy
exec .venv/bin/pytest -q "$@"
