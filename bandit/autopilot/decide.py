"""What the automatic actors would do to an experiment now: pure, from fresh counts.

One action per look, the most urgent first: a guardrail (an arm hurting users), then the
canary's step, then the stopping rule. Each is one new version of the settings with the audit
entry that explains it; the actor applies it only if the settings are still those judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from bandit.api.experiments import promoted_arm, promotion
from bandit.core.canary import judge_step
from bandit.core.guardrails import CONFIDENCE, judge_arm
from bandit.core.models import Actor, ArmCap, CanaryProgress, CanarySettings, Experiment
from bandit.core.payloads import AuditEntry, ExperimentStats, Figure, GuardrailFigures
from bandit.core.policy_adapter import canary_share
from bandit.store.series import arm_window
from policies import ArmStatistics

#: A relapsing arm's cool-down doubles up to this many times the configured one.
MAX_COOLDOWN_FACTOR = 16


@dataclass(frozen=True, slots=True)
class Action:
    """New settings and the audit entry that explains them."""

    changed: Experiment
    entry: AuditEntry


def guardrail_figures(
    experiment: Experiment, buckets: Sequence[tuple[float, dict[bytes, bytes]]], now: float, bucket_s: float
) -> dict[str, GuardrailFigures]:
    """Each guarded arm's window judged: the last `window_s`, or since its trial or restore began."""
    settings = experiment.guardrails
    if settings is None:
        return {}
    figures = {}
    for arm in experiment.guarded_arms():
        since = max(now - settings.window_s, experiment.judged_since.get(arm, 0.0))
        cap = experiment.capped.get(arm)
        if cap is not None and cap.state == "retrying":
            # A trial is judged on all of it, however long: at a small share, holding a limit
            # with confidence takes about 3 / limit requests (150 at 2 %, 300 for a p99).
            since = cap.since
        figures[arm] = judge_arm(settings, arm_window(buckets, arm, since, bucket_s))
    return figures


def _entry(actor: Actor, action: str, arm: str | None, reason: str, now: float, **figures: Figure) -> AuditEntry:
    return AuditEntry(at=now, actor=actor, action=action, arm=arm, reason=reason, figures=figures)


def _figures_of(figures: GuardrailFigures) -> dict[str, Figure]:
    fields = ("requests", "errors", "error_rate", "p_error_rate_above", "answers", "p99_ms", "p_p99_above")
    return {"window_s": figures.window_s, **{field: getattr(figures, field) for field in fields}}


def _aborted(experiment: Experiment, actor: Actor, reason: str, now: float, **figures: Figure) -> Action:
    settings = experiment.policy
    assert isinstance(settings, CanarySettings)
    entry = _entry(actor, "canary_aborted", settings.candidate, f"{reason}; all traffic to {settings.baseline}", now)
    return Action(
        msgspec.structs.replace(experiment, status="aborted"), msgspec.structs.replace(entry, figures=figures)
    )


def _holds(figures: GuardrailFigures) -> bool:
    """Does the arm on trial keep its limits with confidence (P(within the limit) ≥ 0.95 for each)?
    Not merely "no breach yet": an arm a little over its limit would be restored most times."""
    if not figures.judged:
        return False
    errors_hold = figures.p_error_rate_above is None or figures.p_error_rate_above <= 1 - CONFIDENCE
    latency_holds = figures.p_p99_above is None or figures.p_p99_above <= 1 - CONFIDENCE
    return errors_hold and latency_holds


def guardrail_action(experiment: Experiment, figures: dict[str, GuardrailFigures], now: float) -> Action | None:
    settings = experiment.guardrails
    if settings is None:
        return None
    canary = experiment.policy if isinstance(experiment.policy, CanarySettings) else None
    for arm in experiment.guarded_arms():
        judged, cap = figures[arm], experiment.capped.get(arm)
        shown = _figures_of(judged)
        if cap is None:
            if not judged.breached:
                continue
            reason = judged.reason or "breached"
            if canary is not None:
                if arm == canary.candidate:
                    return _aborted(experiment, "guardrail", f"the candidate breaches: {reason}", now, **shown)
                continue  # the baseline is what a canary falls back to: reported, never capped
            control = experiment.control_arm()
            if settings.action == "rollback" and arm != control:
                changed = msgspec.structs.replace(experiment, status="paused", promoted_arm=None)
                entry = _entry("guardrail", "rolled_back", arm, f"{reason}; all traffic to {control}", now, **shown)
                return Action(changed, entry)
            serving = [a.name for a in experiment.arms if not a.shadow and a.name != arm]
            if not [other for other in serving if other not in experiment.capped]:
                continue  # the last arm serving: capping it would leave nothing to send traffic to
            capped = ArmCap(
                state="capped",
                since=now,
                until=now + settings.cooldown_s,
                cooldown_s=settings.cooldown_s,
                reason=reason,
            )
            changed = msgspec.structs.replace(experiment, capped={**experiment.capped, arm: capped})
            return Action(
                changed,
                _entry("guardrail", "capped", arm, f"{reason}; no traffic for {settings.cooldown_s:g} s", now, **shown),
            )
        if cap.state == "capped":
            if now < cap.until:
                continue
            retrying = ArmCap(state="retrying", since=now, until=now, cooldown_s=cap.cooldown_s, reason=cap.reason)
            changed = msgspec.structs.replace(experiment, capped={**experiment.capped, arm: retrying})
            reason = f"cool-down of {cap.cooldown_s:g} s over: {settings.retry_share:.0%} of traffic on trial"
            return Action(changed, _entry("guardrail", "retrying", arm, reason, now, **shown))
        if judged.breached:
            cooldown = min(cap.cooldown_s * 2, settings.cooldown_s * MAX_COOLDOWN_FACTOR)
            reason = judged.reason or "breached"
            capped = ArmCap(state="capped", since=now, until=now + cooldown, cooldown_s=cooldown, reason=reason)
            changed = msgspec.structs.replace(experiment, capped={**experiment.capped, arm: capped})
            entry = _entry(
                "guardrail",
                "capped",
                arm,
                f"breached again on trial: {reason}; no traffic for {cooldown:g} s",
                now,
                **shown,
            )
            return Action(changed, entry)
        if _holds(judged):
            rest = {other: kept for other, kept in experiment.capped.items() if other != arm}
            changed = msgspec.structs.replace(
                experiment, capped=rest, judged_since={**experiment.judged_since, arm: now}
            )
            reason = f"held its limits over {judged.requests} requests on trial: its whole share back"
            return Action(changed, _entry("guardrail", "restored", arm, reason, now, **shown))
    return None


def canary_action(
    experiment: Experiment, statistics: ArmStatistics, candidate_decisions: int, now: float
) -> Action | None:
    settings = experiment.policy
    if not isinstance(settings, CanarySettings):
        return None
    progress = experiment.canary
    if progress is not None and progress.decisions_at_start < 0:
        # A step that (re)started without the candidate's count: it starts now, from the fresh one.
        started = CanaryProgress(step=progress.step, step_started_at=now, decisions_at_start=candidate_decisions)
        share = canary_share(experiment)
        reason = f"step {progress.step + 1} of {len(settings.steps)} starts: {share:g} % to {settings.candidate}"
        entry = _entry("canary", "canary_started", settings.candidate, reason, now, step=progress.step)
        return Action(msgspec.structs.replace(experiment, canary=started), entry)
    verdict = judge_step(experiment, statistics, candidate_decisions, now, None)
    figures: dict[str, Figure] = {
        "step": experiment.canary.step if experiment.canary is not None else 0,
        "decisions_in_step": verdict.decisions_in_step,
        "p_not_worse": verdict.p_not_worse,
        "p_worse": verdict.p_worse,
    }
    if verdict.action == "abort":
        return _aborted(experiment, "canary", verdict.reason, now, **figures)
    if verdict.action == "promote":
        changed = msgspec.structs.replace(experiment, status="promoted", promoted_arm=settings.candidate)
        reason = f"{verdict.reason}: all traffic to {settings.candidate}"
        return Action(changed, _entry("canary", "canary_promoted", settings.candidate, reason, now, **figures))
    if verdict.action == "advance":
        step = (experiment.canary.step if experiment.canary is not None else 0) + 1
        progress = CanaryProgress(step=step, step_started_at=now, decisions_at_start=candidate_decisions)
        changed = msgspec.structs.replace(experiment, canary=progress)
        reason = f"{verdict.reason}: {settings.steps[step]:g} % of traffic to {settings.candidate}"
        entry = _entry("canary", "canary_step", settings.candidate, reason, now, **figures, share=settings.steps[step])
        return Action(changed, entry)
    return None


def stopping_action(
    experiment: Experiment, stats: ExperimentStats, figures: dict[str, GuardrailFigures], now: float
) -> Action | None:
    rule = experiment.stopping
    winner = stats.stopping.arm
    if rule.action != "promote" or isinstance(experiment.policy, CanarySettings) or not stats.stopping.met:
        return None
    if winner is None or winner in experiment.capped or (winner in figures and figures[winner].breached):
        return None
    if promoted_arm(experiment) == winner:
        return None  # a static split already all on the winner (a promotion keeps it running)
    arm = next(arm for arm in stats.arms if arm.name == winner)
    reason = (
        f"stopping rule met: P(best) {arm.p_best:.3f} >= {rule.p_best:g}, "
        f"expected loss {arm.expected_loss:.4g} <= {rule.expected_loss:g}"
    )
    entry = _entry("stopping", "promoted", winner, reason, now, p_best=arm.p_best, expected_loss=arm.expected_loss)
    return Action(promotion(experiment, winner), entry)


def decide(
    experiment: Experiment,
    stats: ExperimentStats,
    statistics: ArmStatistics,
    decisions: dict[str, int],
    figures: dict[str, GuardrailFigures],
    now: float,
) -> Action | None:
    """The one action the experiment calls for now, if any, while it runs. Guardrails protect
    users whatever an operator held; the canary and the stopping rule wait while held."""
    if experiment.status != "running":
        return None
    guarded = guardrail_action(experiment, figures, now)
    if guarded is not None or experiment.autopilot_held:
        return guarded
    candidate = experiment.policy.candidate if isinstance(experiment.policy, CanarySettings) else None
    return canary_action(experiment, statistics, decisions.get(candidate or "", 0), now) or stopping_action(
        experiment, stats, figures, now
    )


def judged_span_s(experiment: Experiment, now: float) -> float:
    """How far back the guardrails of `experiment` read: the window, or its oldest trial."""
    settings = experiment.guardrails
    if settings is None:
        return 0.0
    trials = [cap.since for cap in experiment.capped.values() if cap.state == "retrying"]
    return max([float(settings.window_s), *(now - since for since in trials)])
