"""The automatic actors: guardrails, progressive canaries and auto-promotion, one replica at a time."""

from __future__ import annotations

from bandit.autopilot.actor import Autopilot
from bandit.autopilot.decide import Action, decide, guardrail_figures

__all__ = ["Action", "Autopilot", "decide", "guardrail_figures"]
