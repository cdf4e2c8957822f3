"""Feedback ingestion: verify each decision id, then count rewards once per decision."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bandit.core.decision_ids import Decision, DecisionSigner
from bandit.core.errors import ArmNotFound, ExpiredDecision, InvalidInput, MabError, StoreUnavailable
from bandit.core.models import Experiment
from bandit.core.payloads import FeedbackItem, FeedbackResult, RejectedItem
from bandit.core.policy_adapter import observation_rules, reward_scale
from bandit.store import keys
from bandit.store.counters import CounterStore, FeedbackRecord

#: Seen-markers outlive the window a little, so a duplicate is never counted on a clock edge.
MARKER_GRACE_S = 60
_OUTCOMES = {
    -1: (410, "the experiment was reset after this decision"),
    -2: (404, "the experiment no longer exists"),
}


@dataclass(slots=True)
class _Verified:
    index: int
    decision: Decision
    experiment: Experiment
    reward: float


async def ingest(
    items: list[FeedbackItem],
    signer: DecisionSigner,
    counters: CounterStore,
    find_experiment: Callable[[str], Awaitable[Experiment]],
    on_counted: Callable[[str], None] | None = None,
) -> FeedbackResult:
    """Count a batch of rewards; every item ends up accepted, duplicate or rejected with a reason.

    `on_counted(experiment)` is called for each experiment that gained at least one reward.
    """
    rejected: list[RejectedItem] = []
    verified: list[_Verified] = []
    now_ms = time.time_ns() // 1_000_000
    for index, item in enumerate(items):
        try:
            verified.append(await _verify(index, item, signer, find_experiment, now_ms))
        except StoreUnavailable:
            raise  # not this item's fault: the whole request answers 503 with Retry-After, to be retried
        except MabError as error:
            rejected.append(RejectedItem(index=index, status=error.status_code, reason=error.detail))

    groups: defaultdict[tuple[str, str], list[_Verified]] = defaultdict(list)
    for entry in verified:
        groups[(entry.decision.experiment, entry.decision.incarnation)].append(entry)
    accepted = duplicate = 0
    for (experiment, incarnation), entries in groups.items():
        records = [
            FeedbackRecord(
                arm=entry.decision.arm,
                marker=keys.decision_marker(entry.decision.issued_ms, entry.decision.nonce),
                reward=entry.reward,
                expires_at=entry.decision.issued_ms // 1000 + entry.experiment.reward.window_s + MARKER_GRACE_S,
                scaled_reward=(entry.reward - offset) / width,
            )
            for entry in entries
            for offset, width in [reward_scale(entry.experiment)]
        ]
        codes = await counters.record_feedback(
            experiment, incarnation, records, observation_rules(entries[0].experiment)
        )
        if on_counted is not None and 1 in codes:
            on_counted(experiment)
        for entry, code in zip(entries, codes, strict=True):
            if code == 1:
                accepted += 1
            elif code == 0:
                duplicate += 1
            else:
                status, reason = _OUTCOMES[code]
                rejected.append(RejectedItem(index=entry.index, status=status, reason=reason))
    rejected.sort(key=lambda item: item.index)
    return FeedbackResult(accepted=accepted, duplicate=duplicate, rejected=len(rejected), errors=rejected)


async def _verify(
    index: int,
    item: FeedbackItem,
    signer: DecisionSigner,
    find_experiment: Callable[[str], Awaitable[Experiment]],
    now_ms: int,
) -> _Verified:
    decision = signer.verify(item.decision)
    experiment = await find_experiment(decision.experiment)
    if experiment.arm(decision.arm) is None:
        raise ArmNotFound(detail=f"arm {decision.arm!r} is no longer part of experiment {decision.experiment!r}")
    age_s = (now_ms - decision.issued_ms) / 1000
    if age_s > experiment.reward.window_s:
        raise ExpiredDecision(
            detail=f"decision is {age_s:.0f} s old, past the experiment's feedback window of "
            f"{experiment.reward.window_s} s"
        )
    bounds = experiment.reward.bounds
    if bounds is not None and not bounds[0] <= item.reward <= bounds[1]:
        raise InvalidInput(
            detail=f"reward {item.reward} is outside the experiment's reward bounds [{bounds[0]}, {bounds[1]}]"
        )
    penalty = experiment.reward.latency_penalty
    reward = item.reward
    if penalty > 0:
        # reward = feedback − λ · latency_s; an id without a latency (issued before they were
        # recorded) is charged nothing rather than refused.
        reward -= penalty * (decision.latency_us or 0) / 1e6
    return _Verified(index, decision, experiment, reward)
