"""Guardrail verdicts: does an arm keep its error-rate and p99 limits over the recent window?

Each limit is a tail probability under a Beta posterior with a uniform prior, so an arm is
judged breaching only when the evidence says so with `CONFIDENCE`:

- error rate: P(rate > max_error_rate | errors, requests) ≥ 0.95;
- p99: the p99 is above `max_p99_ms` exactly when more than 1 % of answers are slower than
  it, so P(share of slower answers > 1 % | slower, answers) ≥ 0.95. The latency buckets are
  25 % wide: answers in the bucket the limit falls in count as slower for the share of the
  bucket above the limit, so an arm within about 12 % of the limit may be judged either way.

Below `min_decisions` requests (or answers, for latency) in the window nothing is judged:
with few observations the uniform prior, which puts 98 % of its mass above a 2 % error
rate, would speak louder than the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats

from bandit.core.latency_buckets import BUCKET_UPPER_MS, quantile
from bandit.core.models import Experiment, GuardrailSettings
from bandit.core.payloads import ArmGuardrail, AutopilotVerdict, GuardrailFigures

CONFIDENCE = 0.95
#: The share of answers allowed above the p99 limit.
P99_TAIL = 0.01


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One arm's requests over the guardrail window, from every replica's counts."""

    requests: int
    errors: int
    # Latency bucket -> answers (bandit/core/latency_buckets.py).
    latencies: dict[int, int]


def probability_above(limit: float, hits: int, trials: int) -> float:
    """P(rate > limit) under Beta(1 + hits, 1 + trials − hits)."""
    return float(stats.beta.sf(limit, 1 + hits, 1 + max(0, trials - hits)))


def slower_than(latencies: dict[int, int], limit_ms: float) -> int:
    """Answers slower than `limit_ms`: those of the buckets above it, and of the bucket it falls
    in the share above it (spread evenly over the bucket, as Prometheus's histogram_quantile does)."""
    slower = 0.0
    for bucket, count in latencies.items():
        lower, upper = (BUCKET_UPPER_MS[bucket - 1] if bucket else 0.0), BUCKET_UPPER_MS[bucket]
        if lower >= limit_ms:
            slower += count
        elif upper > limit_ms:
            slower += count * (upper - limit_ms) / (upper - lower)
    return round(slower)


def judge_arm(settings: GuardrailSettings, window: WindowCounts) -> GuardrailFigures:
    """The window's figures for one arm and whether they breach `settings`."""
    reasons = []
    error_rate = p_errors = None
    judged = window.requests >= settings.min_decisions
    if window.requests:
        error_rate = window.errors / window.requests
    if settings.max_error_rate is not None and judged:
        p_errors = probability_above(settings.max_error_rate, window.errors, window.requests)
        if p_errors >= CONFIDENCE:
            reasons.append(
                f"error rate {error_rate:.2%} of {window.requests} requests: P(above {settings.max_error_rate:.2%}) "
                f"= {p_errors:.3f}"
            )
    answers = sum(window.latencies.values())
    p99 = quantile(window.latencies, 0.99)
    slow = p_slow = None
    if settings.max_p99_ms is not None and answers >= settings.min_decisions:
        slow = slower_than(window.latencies, settings.max_p99_ms)
        p_slow = probability_above(P99_TAIL, slow, answers)
        if p_slow >= CONFIDENCE:
            reasons.append(
                f"{slow} of {answers} answers slower than {settings.max_p99_ms:g} ms (p99 {p99:.0f} ms): "
                f"P(p99 above the limit) = {p_slow:.3f}"
            )
    return GuardrailFigures(
        breached=bool(reasons),
        judged=judged or answers >= settings.min_decisions,
        window_s=settings.window_s,
        requests=window.requests,
        errors=window.errors,
        error_rate=error_rate,
        p_error_rate_above=p_errors,
        answers=answers,
        p99_ms=p99,
        slower_answers=slow,
        p_p99_above=p_slow,
        reason="; ".join(reasons) or None,
    )


def arm_guardrail(experiment: Experiment, arm: str, verdict: AutopilotVerdict | None) -> ArmGuardrail | None:
    """What stats show of `arm`'s guardrails: its cap, if any, and the last judged figures."""
    if arm not in experiment.guarded_arms():
        return None
    current = (
        verdict is not None and verdict.version == experiment.version and verdict.incarnation == experiment.incarnation
    )
    figures = verdict.guardrails.get(arm) if verdict is not None and current else None
    cap = experiment.capped.get(arm)
    breached = cap is not None or (figures is not None and figures.breached)
    return ArmGuardrail(
        state="breached" if breached else "ok",
        serving=cap.state if cap is not None else "full",
        since=cap.since if cap is not None else None,
        until=cap.until if cap is not None and cap.state == "capped" else None,
        figures=figures,
        judged_at=verdict.judged_at if verdict is not None and current else None,
    )
