"""The command line: `mab serve`, `mab demo`, `mab rotate-secret`, and the local Redis they may start."""

from __future__ import annotations

from bandit.cli.commands import main

__all__ = ["main"]
