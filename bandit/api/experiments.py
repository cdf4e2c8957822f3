"""The management API: experiments and their lifecycle, behind the admin token."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from msgspec import UNSET

from bandit.api.auth import require_admin
from bandit.api.errors import explain
from bandit.exceptions import ArmNotFound, InvalidInput
from bandit.live_stats import compute_stats
from bandit.models import (
    NAME_PATTERN,
    NAME_RULE,
    Experiment,
    ExperimentPatch,
    ExperimentSpec,
    PromoteRequest,
    StaticSettings,
)
from bandit.payloads import ExperimentStats
from bandit.services import Services

#: The `{name}` of a URL: checked like a stored name, so no other text reaches a Redis key.
ExperimentName = Annotated[
    str, Parameter(min_length=1, max_length=64, pattern=NAME_PATTERN, description=f"experiment name: {NAME_RULE}")
]


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
    path = "/api/experiments"
    guards = [require_admin]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["management"]  # noqa: RUF012

    @post("/", status_code=201)
    async def create(self, data: ExperimentSpec, services: Services) -> Experiment:
        """Create an experiment; it takes traffic at once on this replica, within a second on others."""
        experiment = await services.store.create(data, max_experiments=services.settings.max_experiments)
        await services.registry.refresh_one(data.name)
        return experiment

    @get("/")
    async def list_experiments(self, services: Services) -> list[Experiment]:
        return await services.store.list_all()

    @get("/{name:str}")
    async def get_experiment(self, name: ExperimentName, services: Services) -> Experiment:
        return await services.store.get(name)

    @patch("/{name:str}")
    async def update(self, name: ExperimentName, data: ExperimentPatch, services: Services) -> Experiment:
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

        return await self._update(services, name, apply)

    @delete("/{name:str}", status_code=204)
    async def remove(self, name: ExperimentName, services: Services) -> None:
        await services.store.delete(name)
        services.registry.snapshots.pop(name, None)

    @post("/{name:str}/pause", status_code=200)
    async def pause(self, name: ExperimentName, services: Services) -> Experiment:
        """Send all traffic to the control (first serving) arm until resumed."""
        return await self._update(services, name, lambda e: msgspec.structs.replace(e, status="paused"))

    @post("/{name:str}/resume", status_code=200)
    async def resume(self, name: ExperimentName, services: Services) -> Experiment:
        """Hand routing back to the policy."""
        return await self._update(
            services, name, lambda e: msgspec.structs.replace(e, status="running", promoted_arm=None)
        )

    @post("/{name:str}/promote", status_code=200)
    async def promote(self, name: ExperimentName, services: Services, data: PromoteRequest | None = None) -> Experiment:
        """Send all traffic to one arm (for a static split: move all weight to it)."""
        arm = data.arm if data is not None else None
        return await self._update(services, name, lambda e: _promotion(e, arm))

    @post("/{name:str}/reset", status_code=200)
    async def reset(self, name: ExperimentName, services: Services) -> Experiment:
        """Forget all statistics; feedback for earlier decisions is refused from now on."""
        return await self._update(services, name, lambda e: e, reset_statistics=True)

    @get("/{name:str}/stats")
    async def stats(self, name: ExperimentName, services: Services) -> ExperimentStats:
        return await compute_stats(services.store, services.health, await services.store.get(name))

    @staticmethod
    async def _update(services: Services, name: str, change: Any, *, reset_statistics: bool = False) -> Experiment:
        experiment = await services.store.update(name, change, reset_statistics=reset_statistics)
        await services.registry.refresh_one(name)
        return experiment
