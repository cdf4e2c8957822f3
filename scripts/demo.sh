#!/usr/bin/env bash
# Set up and run the live demo: Redis, three simulated model versions, the service, traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/mab demo "$@"
