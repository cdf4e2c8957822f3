"""A service worker SIGKILLed under load (`mab serve` with 2 workers).

What must hold: no reward that got a 202 is lost (feedback is acknowledged only after
its Lua script ran in Redis); the decisions lost are only those the dead worker had
counted but not flushed yet, which is bounded before the run from the flush interval
and the decision rate; uvicorn's supervisor starts a replacement worker, which serves.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass

from loadtest.faults.books import Books, reconcile
from loadtest.faults.load import BackgroundLoad, Ledger
from loadtest.faults.report import Row
from loadtest.faults.rig import ModelProcess, log_dir, running_service, wait_until
from loadtest.faults.workers import connections_per_worker, invoke_on_every_worker


def lost_decisions_bound(decisions_per_s: float, flush_interval_s: float, in_flight: int) -> int:
    """The most decisions a killed worker can take with it.

    Its buffer holds what it counted since its last completed flush: one flush interval,
    plus the flush's own round trip and event-loop lag, both taken as at most one more
    interval. On top, each response already sent may not have been counted yet (it is
    counted right after its last byte): at most one per request in flight, one per
    client. The whole service's decision rate stands in for the killed worker's share.
    """
    return math.ceil(decisions_per_s * 2 * flush_interval_s) + in_flight


@dataclass(frozen=True, slots=True)
class WorkerCrash:
    ledger: Ledger
    books: Books
    flush_interval_s: float
    decisions_per_s: float
    bound: int
    # Client connections the killed worker held when it was killed.
    victim_connections: int
    # Seconds from the SIGKILL until the supervisor had a new worker process, and until it served.
    replaced_s: float
    replacement_serving_s: float
    concurrency: int
    command: str

    @property
    def failed_invokes(self) -> int:
        return sum(self.ledger.failed.values())

    def row(self) -> Row:
        ledger = self.ledger
        return Row(
            scenario="Worker crash",
            load=f"{self.decisions_per_s:.0f} invokes/s + feedback, {self.concurrency} clients, 2 workers",
            faults=f"one of the 2 workers SIGKILLed (it held {self.victim_connections} client connections)",
            requests=sum(ledger.invokes.values()),
            failed=self.failed_invokes,
            rewards_acknowledged=len(ledger.acknowledged),
            rewards_lost=self.books.rewards_lost,
            decisions_lost=self.books.decisions_lost,
            decisions_bound=self.bound,
            command=self.command,
            notes=f"failed = requests in flight on the killed worker's connections; bound = "
            f"⌈{self.decisions_per_s:.0f}/s × 2 × {self.flush_interval_s} s flush⌉ + {self.concurrency} "
            f"requests in flight; uvicorn started a new worker {self.replaced_s:.2f} s after the kill, serving "
            f"{self.replacement_serving_s:.2f} s after it",
        )


def run_worker_crash(
    redis_url: str,
    before_s: float = 3.0,
    after_s: float = 3.0,
    concurrency: int = 16,
    rate_per_s: float = 400.0,
    flush_interval_s: float = 0.2,
    command: str = "python -m loadtest.faults --only worker",
) -> WorkerCrash:
    """SIGKILL one of two workers halfway through the load; reconcile, and bound what was lost."""
    name = f"crash-{int(time.time() * 1000) % 10**9}"
    models = ModelProcess(["v1:0.3", "v2:0.5", "v3:0.7"])
    with (
        models.running(),
        running_service(
            redis_url, log_dir() / f"{name}.log", workers=2, BANDIT_FLUSH_INTERVAL=str(flush_interval_s)
        ) as service,
    ):
        service.create({"name": name, "arms": [{"name": n, "url": u} for n, u in models.urls.items()]})
        also_served: Counter[str] = Counter()
        invoke_on_every_worker(service.port, service.workers(), name, 1, also_served)
        with BackgroundLoad(service.url, name, concurrency, rate_per_s) as load:
            load.sleep(before_s)
            # The worker holding most of the load's connections: the crash must hit traffic.
            held = connections_per_worker(service.port, service.workers())
            victim, victim_connections = held.most_common(1)[0] if held else (service.workers()[0], 0)
            load.enter("crash")
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            replaced_s = wait_until(
                lambda: len(service.workers()) == 2 and victim not in service.workers(), 30, "a new worker"
            )
            load.enter("after")
            wait_until(
                lambda: all(
                    "failed" not in arms
                    for arms in invoke_on_every_worker(service.port, service.workers(), name, 1, also_served).values()
                ),
                30,
                "the new worker serving",
            )
            replacement_serving_s = time.monotonic() - killed_at
            load.sleep(after_s)
        books = reconcile(service, name, load.ledger, also_served)
    seconds = sum(load.ledger.phase_seconds[phase] for phase in ("before", "crash", "after"))
    decisions_per_s = sum(load.ledger.served.values()) / seconds
    return WorkerCrash(
        ledger=load.ledger,
        books=books,
        flush_interval_s=flush_interval_s,
        decisions_per_s=decisions_per_s,
        bound=lost_decisions_bound(decisions_per_s, flush_interval_s, concurrency),
        victim_connections=victim_connections,
        replaced_s=replaced_s,
        replacement_serving_s=replacement_serving_s,
        concurrency=concurrency,
        command=command,
    )
