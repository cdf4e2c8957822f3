"""`POST /feedback`: rewards for decisions, counted exactly once."""

from __future__ import annotations

from litestar import post
from msgspec import UNSET

from bandit.api.ingest import ingest
from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import MabError
from bandit.core.models import Experiment
from bandit.core.payloads import FeedbackRequest, FeedbackResult
from bandit.core.ports import Routing
from bandit.store.counters import CounterStore
from bandit.store.experiments import ExperimentStore


@post("/feedback", status_code=202)
async def post_feedback(
    data: FeedbackRequest,
    signer: DecisionSigner,
    experiments: ExperimentStore,
    counters: CounterStore,
    routing: Routing,
) -> FeedbackResult:
    """Record one reward or a batch; a refused single reward answers with its own status (403, 410...)."""

    async def find_experiment(name: str) -> Experiment:
        return routing.experiment(name) or await experiments.get(name)

    result = await ingest(data.as_items(), signer, counters, find_experiment, routing.note_rewarded)
    if data.items is UNSET and result.errors:
        raise MabError(status_code=result.errors[0].status, detail=result.errors[0].reason)
    return result
