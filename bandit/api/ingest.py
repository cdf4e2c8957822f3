"""Feedback ingestion: verify each decision id, then count rewards once per decision."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from bandit.core.decision_ids import Decision, DecisionSigner
from bandit.core.errors import ArmNotFound, ExpiredDecision, InvalidInput, MabError, StoreUnavailable
from bandit.core.models import DecisionLogSettings, Experiment
from bandit.core.payloads import FeedbackItem, FeedbackResult, RejectedItem
from bandit.core.pending_conversions import delay_bucket
from bandit.core.policy_adapter import observation_rules, reward_scale
from bandit.store import keys
from bandit.store.counters import CounterStore, FeedbackRecord
from bandit.store.decision_log import DecisionLogStore, sampled
from bandit.store.durability import NotReplicated
from bandit.telemetry.metrics import ServiceMetrics

log = logging.getLogger("mab.feedback")

#: Seen-markers and rewarded bitmaps outlive the window a little, so a duplicate is never counted on a clock edge.
MARKER_GRACE_S = 60
_OUTCOMES = {
    -1: (410, "the experiment was reset after this decision"),
    -2: (404, "the experiment no longer exists"),
}


class _Rules:
    """What feedback for one experiment is checked and scaled against, worked out once per batch."""

    __slots__ = (
        "arms",
        "bounds",
        "conversion",
        "experiment",
        "expires_after_s",
        "offset",
        "penalty",
        "width",
        "window_ms",
        "window_s",
    )

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.arms = frozenset(arm.name for arm in experiment.arms)
        self.window_s = experiment.reward.window_s
        self.window_ms = self.window_s * 1000
        self.bounds = experiment.reward.bounds
        self.penalty = experiment.reward.latency_penalty
        self.offset, self.width = reward_scale(experiment)
        self.expires_after_s = self.window_s + MARKER_GRACE_S
        # Conversion mode: each conversion's delay feeds the exposure of pending decisions.
        self.conversion = experiment.reward.mode == "conversion"


async def ingest(
    items: list[FeedbackItem],
    signer: DecisionSigner,
    counters: CounterStore,
    find_experiment: Callable[[str], Awaitable[Experiment]],
    on_counted: Callable[[str], None] | None = None,
    metrics: ServiceMetrics | None = None,
    decision_log: DecisionLogStore | None = None,
) -> FeedbackResult:
    """Count a batch of rewards; every item ends up accepted, duplicate or rejected with a reason.

    Each experiment named in the batch is looked up once. `on_counted(experiment)` is called for
    each experiment that gained at least one reward. `metrics` counts every item's outcome.
    """
    rejected: list[RejectedItem] = []
    now_ms = time.time_ns() // 1_000_000
    found: dict[str, _Rules | MabError] = {}
    # Per experiment and incarnation: the items' indices and their records, in batch order.
    groups: dict[tuple[str, str], tuple[_Rules, list[int], list[FeedbackRecord]]] = {}
    verify = signer.verify
    # (experiment, outcome) -> items refused before the feedback script, for the metrics.
    refused: Counter[tuple[str, str]] = Counter()
    for index, item in enumerate(items):
        try:
            decision = verify(item.decision)
        except MabError as error:
            rejected.append(RejectedItem(index=index, status=error.status_code, reason=error.detail))
            # Not signed by us: its experiment name is the sender's, never a label.
            refused["", "rejected"] += 1
            continue
        experiment, arm, incarnation, issued_ms, nonce, latency_us, issuer, sequence = decision
        rules = found.get(experiment)
        if rules is None:
            try:
                rules = found[experiment] = _Rules(await find_experiment(experiment))
            except StoreUnavailable:
                raise  # not this item's fault: the whole request answers 503 with Retry-After, to be retried
            except MabError as error:
                rules = found[experiment] = error
        reward = item.reward
        # What _refusal checks, in a form cheap enough to run per reward; it says why, on doubt.
        if (
            isinstance(rules, MabError)
            or arm not in rules.arms
            or now_ms - issued_ms > rules.window_ms
            or (rules.bounds is not None and not rules.bounds[0] <= reward <= rules.bounds[1])
        ):
            refusal = _refusal(decision, reward, rules, now_ms)
            if refusal is not None:
                rejected.append(RejectedItem(index=index, status=refusal.status_code, reason=refusal.detail))
                refused[experiment, "stale" if refusal.status_code == 410 else "rejected"] += 1
                continue
        assert not isinstance(rules, MabError)  # _refusal refuses every item of an experiment not found
        if rules.penalty > 0:
            # reward = feedback − λ · latency_s; an id without a latency (issued before they were
            # recorded) is charged nothing rather than refused.
            reward -= rules.penalty * (latency_us or 0) / 1e6
        group = groups.get((experiment, incarnation))
        if group is None:
            group = groups[(experiment, incarnation)] = (rules, [], [])
        group[1].append(index)
        group[2].append(
            FeedbackRecord(
                arm,
                # Decisions with a sequence number get a bit in their issuer's bitmap, the others
                # (ids of earlier releases) a seen-marker of their own.
                "" if sequence is not None else keys.decision_marker(issued_ms, nonce),
                reward,
                issued_ms // 1000 + rules.expires_after_s,
                (reward - rules.offset) / rules.width,
                issuer,
                sequence,
                delay_bucket((now_ms - issued_ms) / 1000) if rules.conversion else -1,
            )
        )

    if metrics is not None:
        for (experiment, outcome), count in refused.items():
            metrics.feedback(experiment, outcome, count)
    accepted = duplicate = 0
    for (experiment, incarnation), (rules, indices, records) in groups.items():
        try:
            codes = await counters.record_feedback(
                experiment, incarnation, records, observation_rules(rules.experiment)
            )
        except NotReplicated as error:
            # Counted on the primary, not yet on enough replicas: the request answers 503 and is
            # resent (its rewards then come back as duplicates), so the metrics book them now.
            if metrics is not None and isinstance(error.written, list):
                _book(metrics, experiment, error.written, records)
            raise
        if on_counted is not None and 1 in codes:
            on_counted(experiment)
        logged = rules.experiment.log
        if decision_log is not None and logged is not None and 1 in codes:
            await _log_rewards(decision_log, experiment, logged, items, indices, codes, records)
        if metrics is not None:
            _book(metrics, experiment, codes, records)
        for index, code in zip(indices, codes, strict=True):
            if code == 1:
                accepted += 1
            elif code == 0:
                duplicate += 1
            else:
                status, reason = _OUTCOMES[code]
                rejected.append(RejectedItem(index=index, status=status, reason=reason))
    rejected.sort(key=lambda item: item.index)
    return FeedbackResult(accepted=accepted, duplicate=duplicate, rejected=len(rejected), errors=rejected)


async def _log_rewards(
    decision_log: DecisionLogStore,
    experiment: str,
    settings: DecisionLogSettings,
    items: list[FeedbackItem],
    indices: list[int],
    codes: list[int],
    records: list[FeedbackRecord],
) -> None:
    """Log the rewards just counted (only those: a duplicate is never logged twice) of the
    decisions the log samples. The reward is counted already: a log that cannot be written
    loses its row's reward, never the count, so the request still succeeds."""
    rewards = [
        (items[index].decision, record.reward)
        for index, code, record in zip(indices, codes, records, strict=True)
        if code == 1 and sampled(items[index].decision, settings.sample)
    ]
    try:
        await decision_log.append_rewards(experiment, settings, rewards)
    except StoreUnavailable as error:
        log.warning("rewards not logged: %s", error.detail, extra={"experiment": experiment})


def _book(metrics: ServiceMetrics, experiment: str, codes: list[int], records: list[FeedbackRecord]) -> None:
    """The outcome of each reward the feedback script was given, and the sum of those it counted
    (ServiceMetrics never raises: the rewards are counted already)."""
    counted = {"accepted": 0, "duplicate": 0, "rejected": 0, "stale": 0}
    reward_sums: dict[str, float] = {}
    for code, record in zip(codes, records, strict=True):
        if code == 1:
            counted["accepted"] += 1
            reward_sums[record.arm] = reward_sums.get(record.arm, 0.0) + record.reward
        elif code == 0:
            counted["duplicate"] += 1
        else:
            counted["stale" if _OUTCOMES[code][0] == 410 else "rejected"] += 1
    for outcome, count in counted.items():
        if count:
            metrics.feedback(experiment, outcome, count)
    for arm, total in reward_sums.items():
        metrics.rewarded(experiment, arm, total)


def _refusal(decision: Decision, reward: float, rules: _Rules | MabError, now_ms: int) -> MabError | None:
    """Why this verified decision's reward cannot be counted (checks in their usual order); None if it can."""
    if isinstance(rules, MabError):
        return rules  # the experiment's lookup failed (e.g. it does not exist): every item of it says so
    if decision.arm not in rules.arms:
        return ArmNotFound(detail=f"arm {decision.arm!r} is no longer part of experiment {decision.experiment!r}")
    age_s = (now_ms - decision.issued_ms) / 1000
    if age_s > rules.window_s:
        return ExpiredDecision(
            detail=f"decision is {age_s:.0f} s old, past the experiment's feedback window of {rules.window_s} s"
        )
    bounds = rules.bounds
    if bounds is not None and not bounds[0] <= reward <= bounds[1]:
        return InvalidInput(
            detail=f"reward {reward} is outside the experiment's reward bounds [{bounds[0]}, {bounds[1]}]"
        )
    return None


class FeedbackIntake:
    """Counting rewards as one part: the feedback handler's only dependency.

    Litestar resolves several independent dependencies of a handler in an anyio task group,
    one task each, on every request: for the busiest endpoint after /invoke, one part that
    holds what `ingest` needs costs a fraction of that (BENCHMARKS.md, issue 13).
    """

    def __init__(
        self,
        signer: DecisionSigner,
        counters: CounterStore,
        find_experiment: Callable[[str], Awaitable[Experiment]],
        on_counted: Callable[[str], None] | None = None,
        metrics: ServiceMetrics | None = None,
        decision_log: DecisionLogStore | None = None,
    ) -> None:
        self._signer = signer
        self._counters = counters
        self._find_experiment = find_experiment
        self._on_counted = on_counted
        self._metrics = metrics
        self._decision_log = decision_log

    async def ingest(self, items: list[FeedbackItem]) -> FeedbackResult:
        return await ingest(
            items,
            self._signer,
            self._counters,
            self._find_experiment,
            self._on_counted,
            self._metrics,
            self._decision_log,
        )
