"""The management API: experiments and their lifecycle, behind the admin token."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from msgspec import UNSET

from bandit.api.errors import explain
from bandit.api.parameters import ExperimentName
from bandit.api.stats import StatsMemo
from bandit.core.errors import ArmNotFound, InvalidInput
from bandit.core.models import (
    CanaryProgress,
    CanarySettings,
    Experiment,
    ExperimentPatch,
    ExperimentSpec,
    PromoteRequest,
    StaticSettings,
)
from bandit.core.payloads import AuditEntry, ExperimentStats
from bandit.core.ports import Routing
from bandit.core.settings import Settings
from bandit.store.experiments import AUDIT_ENTRIES_KEPT, Describe, ExperimentStore

#: One INFO line per change of an experiment: the log records what changed, and when.
log = logging.getLogger("mab.api")


def log_change(name: str, change: str, arm: str | None = None) -> None:
    """`experiment <name> <change>`, with the experiment (and the arm it concerns) as fields."""
    fields = {"experiment": name} if arm is None else {"experiment": name, "arm": arm}
    log.info("experiment %s %s", name, change, extra=fields)


def revalidated(current: Experiment, changes: dict[str, Any]) -> Experiment:
    """`current` with `changes`, through every check of the model again.

    Decoded rather than `structs.replace`d: replace runs `__post_init__` too, but its ValueError
    would escape as a 500 instead of a 422 naming the rule.
    """
    raw = msgspec.to_builtins(current)
    raw.update(msgspec.to_builtins(changes))
    try:
        return msgspec.convert(raw, Experiment)
    except msgspec.ValidationError as error:
        raise InvalidInput(detail=explain(str(error))) from None


def operator_entry(action: str, reason: str, arm: str | None = None) -> Describe:
    """The audit entry of an operator's change (the time is the change's)."""
    return lambda _updated: AuditEntry(at=time.time(), actor="operator", action=action, arm=arm, reason=reason)


def _with_rollout_state(previous: Experiment, changed: Experiment) -> Experiment:
    """After new settings: a canary that is new (or between other arms) starts at its first step,
    and caps of arms no longer guarded are lifted."""
    canary = changed.canary
    new, old = changed.policy, previous.policy
    if not isinstance(new, CanarySettings):
        canary = None
    elif not isinstance(old, CanarySettings) or (old.baseline, old.candidate) != (new.baseline, new.candidate):
        # The step's decisions are counted from the actor's next look (decisions_at_start -1).
        canary = CanaryProgress(step_started_at=time.time(), decisions_at_start=-1)
    elif old.steps != new.steps:
        # New steps: the first at or above the current share (never the last, which promotes
        # only after a judged step), from a fresh start.
        share = old.steps[min(canary.step if canary else 0, len(old.steps) - 1)]
        step = next((i for i, value in enumerate(new.steps) if value >= share), len(new.steps) - 1)
        step = max(0, min(step, len(new.steps) - 2))
        canary = CanaryProgress(step=step, step_started_at=time.time(), decisions_at_start=-1)
    guarded = set(changed.guarded_arms())
    capped = {arm: cap for arm, cap in changed.capped.items() if arm in guarded}
    status = changed.status
    if status == "aborted" and not isinstance(new, CanarySettings):
        status = "running"
    return msgspec.structs.replace(changed, canary=canary, capped=capped, status=status)


def _resumed(experiment: Experiment) -> Experiment:
    """Routing back to the policy, automatic actions no longer held; an aborted canary starts over."""
    canary = experiment.canary
    if isinstance(experiment.policy, CanarySettings):
        # The step's clock and decisions restart: a pause is no time the candidate was judged in.
        step = 0 if experiment.status == "aborted" or canary is None else canary.step
        canary = CanaryProgress(step=step, step_started_at=time.time(), decisions_at_start=-1)
    return msgspec.structs.replace(experiment, status="running", promoted_arm=None, autopilot_held=False, canary=canary)


def promotion(experiment: Experiment, arm_name: str | None) -> Experiment:
    serving = [arm for arm in experiment.arms if not arm.shadow]
    if arm_name is None:
        weights = experiment.static_weights()
        idle = [arm.name for arm, w in zip(experiment.arms, weights, strict=True) if not arm.shadow and w == 0]
        if not isinstance(experiment.policy, StaticSettings) or len(serving) != 2 or len(idle) != 1:
            raise InvalidInput(detail="`arm` is required, except to swap a two-arm blue/green (100/0) split")
        arm_name = idle[0]
    chosen = experiment.arm(arm_name)
    if chosen is None or chosen.shadow:
        raise ArmNotFound(detail=f"experiment {experiment.name!r} has no serving arm {arm_name!r}")
    if isinstance(experiment.policy, StaticSettings):
        # Blue/green and canary: all weight moves to the promoted arm; the policy stays static.
        weights = [1.0 if arm.name == arm_name else 0.0 for arm in experiment.arms]
        return msgspec.structs.replace(experiment, policy=StaticSettings(weights=weights), status="running")
    return msgspec.structs.replace(experiment, status="promoted", promoted_arm=arm_name)


def promoted_arm(experiment: Experiment) -> str | None:
    """The arm a promotion sent all traffic to: pinned, or holding all of a static split's weight."""
    weights = experiment.static_weights()
    whole = (arm.name for arm, weight in zip(experiment.arms, weights, strict=True) if weight == 1.0)
    return experiment.pinned_arm() or next(whole, None)


class ExperimentsController(Controller):
    """Behind the admin token: the app mounts it under the admin guard (bandit/api/routes.py)."""

    path = "/api/experiments"
    tags = ["management"]  # noqa: RUF012 - Litestar reads this class attribute

    @post("/", status_code=201)
    async def create(
        self, data: ExperimentSpec, experiments: ExperimentStore, routing: Routing, settings: Settings
    ) -> Experiment:
        """Create an experiment; it takes traffic at once on this replica, within a second on others."""
        experiment = await experiments.create(data, max_experiments=settings.max_experiments)
        await routing.refresh(data.name)
        arms = f"{len(data.arms)} arm" + ("s" if len(data.arms) > 1 else "")
        log_change(data.name, f"created: {arms}, policy {data.policy.__struct_config__.tag}")
        return experiment

    @get("/")
    async def list_experiments(self, experiments: ExperimentStore) -> list[Experiment]:
        return await experiments.list_all()

    @get("/{name:str}")
    async def get_experiment(self, name: ExperimentName, experiments: ExperimentStore) -> Experiment:
        return await experiments.get(name)

    @patch("/{name:str}")
    async def update(
        self, name: ExperimentName, data: ExperimentPatch, experiments: ExperimentStore, routing: Routing
    ) -> Experiment:
        """Replace arms, policy, reward or stopping settings; statistics are kept."""
        changes: dict[str, Any] = {
            field: value
            for field in ("arms", "policy", "reward", "stopping", "guardrails", "log")
            if (value := getattr(data, field)) is not UNSET
        }

        def apply(current: Experiment) -> Experiment:
            changed = _with_rollout_state(current, revalidated(current, changes))
            promoted = changed.arm(changed.promoted_arm) if changed.promoted_arm is not None else None
            if changed.promoted_arm is not None and (promoted is None or promoted.shadow):
                # The promoted arm is gone, or now only shadows: nothing to send all traffic to.
                changed = msgspec.structs.replace(changed, status="running", promoted_arm=None)
            return changed

        replaced = f"{', '.join(changes) or 'nothing'} replaced"
        updated = await _update(experiments, routing, name, apply, describe=operator_entry("updated", replaced))
        log_change(name, f"updated: {replaced}")
        return updated

    @delete("/{name:str}", status_code=204)
    async def remove(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> None:
        await experiments.delete(name)
        routing.forget(name)
        log_change(name, "deleted")

    @post("/{name:str}/pause", status_code=200)
    async def pause(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Send all traffic to the control (first serving) arm until resumed."""
        paused = await _update(
            experiments,
            routing,
            name,
            lambda e: msgspec.structs.replace(e, status="paused", promoted_arm=None),
            describe=lambda e: operator_entry("paused", "all traffic to the control arm", e.pinned_arm())(e),
        )
        control = paused.pinned_arm()
        log_change(name, f"paused: all traffic to {control}", arm=control)
        return paused

    @post("/{name:str}/resume", status_code=200)
    async def resume(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Hand routing back to the policy."""
        resumed = await _update(
            experiments, routing, name, _resumed, describe=operator_entry("resumed", "the policy routes again")
        )
        log_change(name, "resumed: the policy routes again")
        return resumed

    @post("/{name:str}/promote", status_code=200)
    async def promote(
        self,
        name: ExperimentName,
        experiments: ExperimentStore,
        routing: Routing,
        data: PromoteRequest | None = None,
    ) -> Experiment:
        """Send all traffic to one arm (for a static split: move all weight to it)."""
        arm = data.arm if data is not None else None
        promoted = await _update(
            experiments,
            routing,
            name,
            lambda e: promotion(e, arm),
            describe=lambda e: operator_entry("promoted", "all traffic to one arm", promoted_arm(e))(e),
        )
        chosen = promoted_arm(promoted)
        log_change(name, f"promoted: all traffic to {chosen}", arm=chosen)
        return promoted

    @post("/{name:str}/reset", status_code=200)
    async def reset(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Forget all statistics; feedback for earlier decisions is refused from now on."""
        reset = await _update(
            experiments,
            routing,
            name,
            lambda e: e,
            reset_statistics=True,
            describe=operator_entry("reset", "statistics forgotten"),
        )
        log_change(name, f"reset: statistics forgotten, incarnation {reset.incarnation}")
        return reset

    @get("/{name:str}/audit")
    async def audit(
        self,
        name: ExperimentName,
        experiments: ExperimentStore,
        limit: Annotated[int, Parameter(ge=1, le=AUDIT_ENTRIES_KEPT, description="newest entries returned")] = 100,
    ) -> list[AuditEntry]:
        """Every change of the experiment, an operator's or an automatic one (guardrail, canary,
        stopping), oldest first: the newest `limit` of the last ~1,000."""
        return await experiments.audit(name, limit)

    @get("/{name:str}/stats")
    async def stats(self, name: ExperimentName, stats_memo: StatsMemo) -> ExperimentStats:
        # Read from Redis now, recomputed only if the counters, settings or arm health changed
        # since the dashboard (or an earlier call) last computed them.
        return (await stats_memo.current(name)).stats


async def _update(
    experiments: ExperimentStore,
    routing: Routing,
    name: str,
    change: Callable[[Experiment], Experiment],
    *,
    reset_statistics: bool = False,
    describe: Describe | None = None,
) -> Experiment:
    experiment = await experiments.update(name, change, reset_statistics=reset_statistics, describe=describe)
    await routing.refresh(name)
    return experiment
