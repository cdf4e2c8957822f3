"""The decision log over HTTP: its export, and off-policy evaluation of a candidate policy on it.

`GET /api/experiments/{name}/log?since=` streams JSON lines, one per logged decision, with the
fields Open Bandit Pipeline's bandit feedback needs (`action`: the arm's index, `reward`,
`propensity`: its `pscore`) besides the decision id, time, arm name, unit and settings version.
`POST /api/experiments/{name}/evaluate` estimates what a candidate policy would have earned
on the logged decisions (bandit/core/off_policy.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import numpy as np
from litestar import get, post
from litestar.params import Parameter
from litestar.response import Stream

from bandit.api.experiments import revalidated
from bandit.api.parameters import ExperimentName
from bandit.api.stats import StatsMemo
from bandit.core import off_policy
from bandit.core.errors import InvalidInput
from bandit.core.models import Base, Experiment, PolicySettings
from bandit.core.payloads import Estimate, Evaluation
from bandit.core.policy_adapter import allocation, policy_statistics
from bandit.store.counters import experiment_counters
from bandit.store.decision_log import DecisionLogStore, LogRow
from bandit.store.experiments import ExperimentStore

_encode = msgspec.json.Encoder().encode
#: Fewer logged decisions with a reward than this support no estimate.
MIN_EVALUATED = 100


class EvaluateRequest(Base):
    """The candidate: any policy the service runs, or static weights."""

    policy: PolicySettings


def export_row(row: LogRow, actions: dict[str, int]) -> dict[str, Any]:
    """One exported line: the fields Open Bandit Pipeline reads (action, reward, propensity) and the rest."""
    return {
        "decision": row.decision,
        "time": row.at_ms / 1000,
        "arm": row.arm,
        "action": actions.get(row.arm, -1),
        "propensity": row.propensity,
        "reward": row.reward,
        "unit": row.unit,
        "policy_version": row.version,
    }


async def _logged(decision_log: DecisionLogStore, experiment: Experiment, since_ms: int) -> list[LogRow]:
    if experiment.log is None:
        raise InvalidInput(detail=f"experiment {experiment.name!r} keeps no decision log: set its `log` settings")
    return [row async for chunk in decision_log.rows(experiment.name, since_ms) for row in chunk]


@get("/api/experiments/{name:str}/log", tags=["management"])
async def export_log(
    name: ExperimentName,
    experiments: ExperimentStore,
    decision_log: DecisionLogStore,
    since: Annotated[float, Parameter(ge=0, le=1e11, description="unix time (s) of the oldest decision")] = 0.0,
) -> Stream:
    """The logged decisions from `since` on, oldest first, as JSON lines (`application/x-ndjson`),
    each with its reward once counted (null before)."""
    experiment = await experiments.get(name)
    rows = await _logged(decision_log, experiment, int(since * 1000))
    actions = {arm.name: index for index, arm in enumerate(experiment.arms)}

    async def lines() -> AsyncIterator[bytes]:
        for offset in range(0, len(rows), 1000):
            yield b"".join(_encode(export_row(row, actions)) + b"\n" for row in rows[offset : offset + 1000])

    return Stream(lines(), media_type="application/x-ndjson")


def _evaluated(experiment: Experiment, rows: list[LogRow], now_ms: int) -> tuple[off_policy.LoggedData, int]:
    """The decisions an estimate can use: with a reward (in conversion mode, those past their
    window count 0), a positive propensity and an arm still in the experiment."""
    index = {arm.name: i for i, arm in enumerate(experiment.arms)}
    window_ms = experiment.reward.window_s * 1000
    conversion = experiment.reward.mode == "conversion"
    actions, rewards, propensities = [], [], []
    for row in rows:
        reward = row.reward
        if reward is None and conversion and now_ms - row.at_ms > window_ms:
            reward = 0.0
        if reward is None or not row.propensity > 0 or row.arm not in index:
            continue
        actions.append(index[row.arm])
        rewards.append(reward)
        propensities.append(row.propensity)
    data = off_policy.LoggedData(
        np.asarray(actions, dtype=np.intp), np.asarray(rewards, dtype=float), np.asarray(propensities, dtype=float)
    )
    return data, len(rows) - len(actions)


@post("/api/experiments/{name:str}/evaluate", status_code=200, tags=["management"])
async def evaluate(
    name: ExperimentName,
    data: EvaluateRequest,
    experiments: ExperimentStore,
    decision_log: DecisionLogStore,
    stats_memo: StatsMemo,
) -> Evaluation:
    """Estimate the candidate policy's mean reward on the logged traffic (IPS, self-normalised
    IPS, doubly robust, each with a 95 % interval), beside the logging policy's observed mean.

    The candidate routes as it would now, from the experiment's current statistics. 422 when
    the log cannot support the estimate: too few rewarded decisions, or an arm the candidate
    plays that the log holds no decision of.
    """
    experiment = await experiments.get(name)
    candidate = revalidated(experiment, {"policy": data.policy})
    candidate = msgspec.structs.replace(candidate, status="running", promoted_arm=None, capped={})
    computed = await stats_memo.current(name)
    counters = experiment_counters(computed.inputs.counters, candidate)
    target = allocation(candidate, policy_statistics(candidate, counters), np.random.default_rng())
    logged, excluded = _evaluated(experiment, await _logged(decision_log, experiment, 0), time.time_ns() // 10**6)
    n = logged.actions.shape[0]
    if n < MIN_EVALUATED:
        raise InvalidInput(detail=f"the log holds {n} decisions with a reward: at least {MIN_EVALUATED} are needed")
    seen = np.bincount(logged.actions, minlength=len(candidate.arms)) > 0
    unsupported = [
        arm.name for arm, share, found in zip(candidate.arms, target, seen, strict=True) if share > 0 and not found
    ]
    if unsupported:
        raise InvalidInput(
            detail=f"the candidate plays arms {unsupported}, of which the log holds no decision: it cannot be estimated"
        )
    spread = float(np.std(logged.rewards, ddof=1)) / np.sqrt(n)
    observed = float(logged.rewards.mean())
    return Evaluation(
        experiment=name,
        candidate_allocation={arm.name: float(share) for arm, share in zip(candidate.arms, target, strict=True)},
        decisions=n,
        logged_mean=Estimate(
            value=observed, lower=observed - off_policy.Z_95 * spread, upper=observed + off_policy.Z_95 * spread
        ),
        ips=off_policy.ips(logged, target),
        snips=off_policy.snips(logged, target),
        doubly_robust=off_policy.doubly_robust(logged, target),
        effective_sample_size=off_policy.effective_sample_size(logged, target),
        excluded=excluded,
    )
