"""`POST /api/experiments/{name}/rollback`: undo the last change of an experiment's settings."""

from __future__ import annotations

from litestar import post

from bandit.api.experiments import log_change
from bandit.api.parameters import ExperimentName
from bandit.core.models import Experiment
from bandit.core.ports import Routing
from bandit.store.experiments import ExperimentStore


@post("/api/experiments/{name:str}/rollback", status_code=200, tags=["management"])
async def rollback(name: ExperimentName, experiments: ExperimentStore, routing: Routing) -> Experiment:
    """Restore the settings before the last change (a promote, pause, PATCH...); statistics are kept.

    Each call goes one change further back; 409 when no earlier settings are kept.
    """
    experiment = await experiments.rollback(name)
    await routing.refresh(name)
    log_change(name, f"rolled back: the settings before its last change restored, as version {experiment.version}")
    return experiment
