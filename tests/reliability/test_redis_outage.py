"""Redis SIGKILLed under load and restarted on its AOF: routing goes on, feedback is refused
honestly, the service heals itself, and nothing acknowledged is lost (loadtest.faults.redis_outage)."""

from __future__ import annotations

from loadtest.faults.redis_outage import run_redis_outage
from loadtest.faults.report import print_row

COMMAND = "MAB_TEST_DB=4 .venv/bin/pytest -s tests/reliability/test_redis_outage.py"


def test_a_redis_outage_loses_nothing_acknowledged_and_heals_by_itself() -> None:
    outage = run_redis_outage(command=COMMAND)
    print_row(outage.row())
    ledger, books = outage.ledger, outage.books

    # Invokes route from the last snapshot throughout, at the rate held before the outage.
    assert outage.failed_invokes == 0, ledger.failures
    assert ledger.rate("outage") > 0.5 * ledger.rate("before"), dict(ledger.invokes)
    # Feedback is refused, with Retry-After, while Redis is away: no 202 for a reward not stored.
    assert ledger.feedback_503["outage"] > 0
    assert ledger.feedback_503_without_retry_after == 0
    assert outage.readyz_during == 503
    # Redis back: not one reward sent after that is refused (stale pooled connections included).
    assert ledger.feedback_503["after"] == 0 and ledger.feedback_503["drain"] == 0, dict(ledger.feedback_503)
    assert not ledger.pending and not ledger.refused, (len(ledger.pending), ledger.refused[:3])
    # Every 202, before the SIGKILL too, is counted once: AOF with fsync before each reply.
    assert books.rewards_lost == 0 and books.rewards_extra == 0
    assert books.rewards_exact, (books.acknowledged, books.rewards, books.acknowledged_sum, books.reward_sum)
    # Decisions counted during the outage were kept and flushed once Redis returned.
    assert books.decisions_lost == 0, (books.served, books.decisions)
    # The change subscription came back: a change made as Redis returned reached both workers.
    assert outage.change_reached_s is not None, "a config change never reached every worker"
