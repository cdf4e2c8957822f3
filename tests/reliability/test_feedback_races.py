"""The same rewards raced across every process of two replicas count exactly once
(loadtest.faults.feedback_races; tests/test_end_to_end.py covers one process)."""

from __future__ import annotations

from loadtest.faults.feedback_races import COPIES, run_feedback_races
from loadtest.faults.report import print_row

COMMAND = "MAB_TEST_DB=4 .venv/bin/pytest -s tests/reliability/test_feedback_races.py"
DECISIONS = 1500


def test_rewards_raced_across_workers_and_replicas_count_exactly_once(clean_test_db: str) -> None:
    races = run_feedback_races(clean_test_db, decisions=DECISIONS, command=COMMAND)
    print_row(races.row())
    answers, books = races.answers, races.books

    # The copies really went through every process: both workers of one replica and the other.
    assert len(answers.by_process) == 3, answers.by_process
    assert not answers.not_202, answers.not_202
    assert (answers.accepted, answers.duplicate, answers.rejected) == (DECISIONS, (COPIES - 1) * DECISIONS, 0)
    # One reward per decision, sums exact (multiples of 1/4), and every decision counted once.
    assert books.rewards_exact, (books.acknowledged, books.rewards, books.acknowledged_sum, books.reward_sum)
    assert books.decisions_lost == 0, (books.served, books.decisions)
