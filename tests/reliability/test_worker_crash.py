"""A service worker SIGKILLed under load: no acknowledged reward lost, lost decisions within the
bound stated from the flush interval and the decision rate, a new worker (loadtest.faults.worker_crash)."""

from __future__ import annotations

from loadtest.faults.report import print_row
from loadtest.faults.worker_crash import lost_decisions_bound, run_worker_crash

COMMAND = "MAB_TEST_DB=4 .venv/bin/pytest -s tests/reliability/test_worker_crash.py"
CONCURRENCY = 16


def test_a_killed_worker_loses_no_acknowledged_reward_and_a_bounded_number_of_decisions(clean_test_db: str) -> None:
    crash = run_worker_crash(clean_test_db, concurrency=CONCURRENCY, command=COMMAND)
    print_row(crash.row())
    ledger, books = crash.ledger, crash.books
    assert crash.victim_connections > 0, "the killed worker was serving none of the load"

    # Feedback is acknowledged only once Redis ran its script, so a dying worker takes none with it.
    assert not ledger.pending and not ledger.refused
    assert books.rewards_lost == 0 and books.rewards_extra == 0
    assert books.rewards_exact, (books.acknowledged, books.rewards)
    # Decisions it had counted but not flushed are lost, never more than the stated bound.
    assert crash.bound == lost_decisions_bound(crash.decisions_per_s, crash.flush_interval_s, CONCURRENCY)
    assert 0 <= books.decisions_lost <= crash.bound, (books.decisions_lost, crash.bound)
    # Only requests in flight on the killed worker's connections fail: at most one per pooled connection.
    assert crash.failed_invokes <= 2 * CONCURRENCY, ledger.failures
    # uvicorn's supervisor replaced the worker and the replacement serves (the run waits for both).
    assert crash.replaced_s < crash.replacement_serving_s
