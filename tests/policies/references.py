"""Textbook formulas written out by hand, for the tests to hold the vectorised code to."""

from __future__ import annotations

import math


def sutton_barto_step(
    preferences: list[float], velocity: list[float], arm: int, advantage: float, step_size: float, momentum: float
) -> tuple[list[float], list[float]]:
    """H(a) ← H(a) + step·v(a), v(a) ← μ·v(a) + (R − R̄)(1[a = A] − π(a)), π = softmax(H) (§2.8)."""
    exps = [math.exp(h) for h in preferences]
    pi = [e / sum(exps) for e in exps]
    new_velocity = [momentum * v + advantage * ((1.0 if a == arm else 0.0) - pi[a]) for a, v in enumerate(velocity)]
    return [h + step_size * v for h, v in zip(preferences, new_velocity, strict=True)], new_velocity
