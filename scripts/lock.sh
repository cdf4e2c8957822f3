#!/usr/bin/env bash
# Refresh requirements/lock.txt: the exact versions the README's two commands install.
# Run it when pyproject.toml's dependencies change, or to take newer releases on purpose;
# then run scripts/test.sh and commit the lock with what made it change.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/python -m pip install -q "uv>=0.5"
.venv/bin/uv pip compile pyproject.toml requirements/installer.in --extra dev --extra loadtest --extra otel \
  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
  --no-header --annotation-style line --upgrade -o requirements/lock.txt
echo "requirements/lock.txt refreshed; scripts/bootstrap.sh installs it on the next run" >&2
