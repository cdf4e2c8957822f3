"""Sample-ratio mismatch (SRM) checks: traffic and feedback against what they should be.

Decisions: each arm's served decisions against the sum, over every decision, of the share
the policy announced for that arm at that moment (the proxies add it up as they route, see
`DecisionRecorder.assigned`), so a policy that moves traffic is judged as exactly as a
static split. An arm the proxy skipped (ejected, full) while the policy meant it to serve
shows as a mismatch: that is what the check is for. Feedback (explicit mode): the share of
decisions that got a reward, compared across arms in a 2×K table; an arm whose clients report
far less often (a version that breaks the client) stands out. Both are flagged below
p = 0.001, as GrowthBook does, which keeps false alarms rare however often stats are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from bandit.core.payloads import SampleRatioCheck

P_VALUE_THRESHOLD = 0.001
#: The chi-square approximation holds once every expected count is at least this.
MIN_EXPECTED = 5.0
#: Decisions on arms the policy gave no share, as a share of all, that count as a mismatch.
UNEXPECTED_SHARE = 0.01


def _check(p_value: float | None, reason: str | None = None) -> SampleRatioCheck:
    flagged = p_value is not None and p_value < P_VALUE_THRESHOLD
    return SampleRatioCheck(p_value=p_value, flagged=flagged, reason=reason)


def decision_check(observed: Sequence[float], expected: Sequence[float]) -> SampleRatioCheck:
    """Goodness of fit of the decisions per arm to the expected decisions per arm."""
    observed_counts, expected_counts = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    # A retry may land on an arm the policy gave no share (its target failed): a few are no mismatch.
    unexpected = observed_counts[expected_counts <= 0].sum()
    if unexpected >= MIN_EXPECTED and unexpected > UNEXPECTED_SHARE * observed_counts.sum():
        return _check(0.0, f"arms the policy gave no share served {unexpected:.0f} decisions")
    present = expected_counts > 0
    if present.sum() < 2:
        return _check(None, "fewer than two arms were expected to serve")
    observed_counts, expected_counts = observed_counts[present], expected_counts[present]
    # The expected counts are scaled to the decisions observed: only the ratio is under test.
    total = observed_counts.sum()
    if total <= 0:
        return _check(None, "no decisions yet")
    scaled = expected_counts / expected_counts.sum() * total
    if scaled.min() < MIN_EXPECTED:
        return _check(None, f"an arm is expected fewer than {MIN_EXPECTED:g} decisions")
    result = stats.chisquare(observed_counts, scaled)
    return _check(float(result.pvalue))


def feedback_check(decisions: Sequence[float], rewarded: Sequence[float]) -> SampleRatioCheck:
    """Independence of "got feedback" from the arm, over the arms with decisions."""
    served, reported = np.asarray(decisions, dtype=float), np.asarray(rewarded, dtype=float)
    present = served > 0
    if present.sum() < 2:
        return _check(None, "fewer than two arms served decisions")
    served, reported = served[present], np.minimum(reported[present], served[present])
    table = np.vstack([reported, served - reported])
    if (table.sum(axis=1) == 0).any():
        return _check(None, "every decision or none got feedback")
    expected = stats.contingency.expected_freq(table)
    if expected.min() < MIN_EXPECTED:
        return _check(None, f"a cell is expected fewer than {MIN_EXPECTED:g} counts")
    result = stats.chi2_contingency(table, correction=False)
    return _check(float(result.pvalue))
