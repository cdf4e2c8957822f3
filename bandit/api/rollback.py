"""`POST /api/experiments/{name}/rollback`: undo the last change of an experiment's settings."""

from __future__ import annotations

from litestar import post

from bandit.api.auth import require_admin
from bandit.api.experiments import ExperimentName
from bandit.models import Experiment
from bandit.services import Services


@post("/api/experiments/{name:str}/rollback", status_code=200, guards=[require_admin], tags=["management"])
async def rollback(name: ExperimentName, services: Services) -> Experiment:
    """Restore the settings before the last change (a promote, pause, PATCH...); statistics are kept.

    Each call goes one change further back; 409 when no earlier settings are kept.
    """
    experiment = await services.store.rollback(name)
    await services.registry.refresh_one(name)
    return experiment
