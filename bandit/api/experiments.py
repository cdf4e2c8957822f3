"""The management API: experiments and their lifecycle, behind the admin token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import UNSET

from bandit.api.errors import explain
from bandit.api.parameters import ExperimentName
from bandit.api.stats import StatsMemo
from bandit.core.errors import ArmNotFound, InvalidInput
from bandit.core.models import Experiment, ExperimentPatch, ExperimentSpec, PromoteRequest, StaticSettings
from bandit.core.payloads import ExperimentStats
from bandit.core.ports import Routing
from bandit.core.settings import Settings
from bandit.store.experiments import ExperimentStore


def _revalidated(current: Experiment, changes: dict[str, Any]) -> Experiment:
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


def _promotion(experiment: Experiment, arm_name: str | None) -> Experiment:
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
            for field in ("arms", "policy", "reward", "stopping")
            if (value := getattr(data, field)) is not UNSET
        }

        def apply(current: Experiment) -> Experiment:
            changed = _revalidated(current, changes)
            if changed.promoted_arm is not None and changed.arm(changed.promoted_arm) is None:
                changed = msgspec.structs.replace(changed, status="running", promoted_arm=None)
            return changed

        return await _update(experiments, routing, name, apply)

    @delete("/{name:str}", status_code=204)
    async def remove(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> None:
        await experiments.delete(name)
        routing.forget(name)

    @post("/{name:str}/pause", status_code=200)
    async def pause(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Send all traffic to the control (first serving) arm until resumed."""
        return await _update(experiments, routing, name, lambda e: msgspec.structs.replace(e, status="paused"))

    @post("/{name:str}/resume", status_code=200)
    async def resume(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Hand routing back to the policy."""
        return await _update(
            experiments, routing, name, lambda e: msgspec.structs.replace(e, status="running", promoted_arm=None)
        )

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
        return await _update(experiments, routing, name, lambda e: _promotion(e, arm))

    @post("/{name:str}/reset", status_code=200)
    async def reset(self, name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
        """Forget all statistics; feedback for earlier decisions is refused from now on."""
        return await _update(experiments, routing, name, lambda e: e, reset_statistics=True)

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
) -> Experiment:
    experiment = await experiments.update(name, change, reset_statistics=reset_statistics)
    await routing.refresh(name)
    return experiment
