"""`POST /feedback`: rewards for decisions, counted exactly once."""

from __future__ import annotations

from litestar import post
from msgspec import UNSET

from bandit.api.auth import require_feedback_token
from bandit.exceptions import MabError
from bandit.feedback import ingest
from bandit.models import Experiment
from bandit.payloads import FeedbackRequest, FeedbackResult
from bandit.services import Services


@post("/feedback", status_code=202, guards=[require_feedback_token])
async def post_feedback(data: FeedbackRequest, services: Services) -> FeedbackResult:
    """Record one reward or a batch; a refused single reward answers with its own status (403, 410...)."""

    async def find_experiment(name: str) -> Experiment:
        snapshot = services.registry.get(name)
        return snapshot.experiment if snapshot is not None else await services.store.get(name)

    result = await ingest(
        data.as_items(), services.signer, services.store, find_experiment, services.registry.note_rewarded
    )
    if data.items is UNSET and result.errors:
        raise MabError(status_code=result.errors[0].status, detail=result.errors[0].reason)
    return result
