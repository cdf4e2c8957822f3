"""The command line: `mab serve`, `mab demo`, `mab rotate-secret`, the management verbs over a
running service (`mab apply -f experiments.toml`, `list`, `get`, `stats`, `pause` …: `manage.py`,
with the TOML files read by `manifest.py` and diffed by `plan.py`), and the local Redis they may start."""

from __future__ import annotations

from bandit.cli.commands import main

__all__ = ["main"]
