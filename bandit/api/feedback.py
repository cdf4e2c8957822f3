"""`POST /feedback`: rewards for decisions, counted exactly once."""

from __future__ import annotations

from litestar import post
from msgspec import UNSET

from bandit.api.ingest import FeedbackIntake
from bandit.core.errors import MabError
from bandit.core.payloads import FeedbackRequest, FeedbackResult


@post("/feedback", status_code=202)
async def post_feedback(data: FeedbackRequest, feedback_intake: FeedbackIntake) -> FeedbackResult:
    """Record one reward or a batch; a refused single reward answers with its own status (403, 410...)."""
    result = await feedback_intake.ingest(data.as_items())
    if data.items is UNSET and result.errors:
        raise MabError(status_code=result.errors[0].status, detail=result.errors[0].reason)
    return result
