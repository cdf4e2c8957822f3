"""The client stands alone: importing it loads none of the service's heavy parts, and the limits it
checks rewards against are the service's own."""

from __future__ import annotations

import email.utils
import json
import random
import subprocess
import sys
import time

from bandit.client import Backoff, limits
from bandit.client.errors import retry_after_s
from bandit.core import models, payloads
from tests.servers import ROOT

#: What an application server that imports the client must not pay for.
HEAVY = ["numpy", "scipy", "litestar", "redis", "bandit.core", "bandit.store", "bandit.api", "proxy", "policies"]


def test_importing_the_client_loads_neither_numpy_scipy_litestar_nor_the_service() -> None:
    def loaded_by(statement: str) -> list[str]:
        probe = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 0, result.stderr
        return [m for m in json.loads(result.stdout) if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]

    assert loaded_by("from bandit.client import Client, AsyncClient, FeedbackBatcher, AsyncFeedbackBatcher") == []
    # The probe can see them: the service's own core does load numpy.
    assert "numpy" in loaded_by("import bandit.core.models")


def test_the_clients_limits_are_the_services() -> None:
    assert limits.MAX_FEEDBACK_ITEMS == payloads.MAX_FEEDBACK_ITEMS
    assert limits.MAX_DECISION_ID_LENGTH == payloads.MAX_DECISION_ID_LENGTH
    assert limits.MAX_REWARD_MAGNITUDE == models.MAX_REWARD_MAGNITUDE


def test_backoff_grows_to_its_cap_and_never_comes_before_retry_after() -> None:
    backoff, rng = Backoff(initial_s=0.1, max_s=2.0), random.Random(3)
    first = [backoff.delay_s(1, None, rng) for _ in range(200)]
    assert all(0.05 <= delay <= 0.1 for delay in first) and len(set(first)) > 100  # jittered
    later = [backoff.delay_s(retry, None, rng) for retry in range(5, 500)]
    assert all(1.0 <= delay <= 2.0 for delay in later)  # capped at max_s, however long it goes on
    waited = [backoff.delay_s(1, 3.0, rng) for _ in range(200)]
    assert all(3.0 <= delay <= 3.05 for delay in waited)  # Retry-After first, a little jitter past it
    assert backoff.delay_s(1, 10_000, rng) <= 60.05  # a wild Retry-After is capped


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("1") == 1.0
    assert retry_after_s(" 2.5 ") == 2.5
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("nan") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 58 <= (retry_after_s(in_a_minute) or 0) <= 60
