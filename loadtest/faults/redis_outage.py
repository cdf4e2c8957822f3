"""Redis SIGKILLed under load and started again on the same port and AOF.

What must hold (DESIGN.md, "Behaviour under trouble"): invokes keep succeeding from the
last snapshot; feedback answers 503 with Retry-After while Redis is away, so nothing is
acknowledged that is not stored; the service reconnects by itself (commands, and the
change subscription: the poll runs only every 30 s here, so a config change can reach
both workers in time through pub/sub alone); afterwards every reward that got a 202 is
counted, exactly once, and so is every decision served, buffered through the outage.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtest.faults.books import Books, reconcile
from loadtest.faults.load import BackgroundLoad, Ledger
from loadtest.faults.report import Row
from loadtest.faults.rig import KillableRedis, ModelProcess, Service, log_dir, running_service, wait_until
from loadtest.faults.workers import invoke_on_every_worker

#: The poll that would otherwise also carry config changes: far longer than any wait below.
REFRESH_INTERVAL_S = 30.0
#: The second, load-free outage that the config change follows.
SECOND_OUTAGE_S = 1.0
#: Far longer than the flush interval and a resubscription, far shorter than the poll.
CHANGE_WAIT_S = 5.0
#: Invokes each worker must answer before "it routes by the config" is believed.
PROBES = 5


@dataclass(frozen=True, slots=True)
class RedisOutage:
    ledger: Ledger
    books: Books
    outage_s: float
    readyz_during: int
    # Seconds from Redis answering again to the service's /readyz answering 200.
    ready_again_s: float
    # Seconds from a config change made as Redis returned until every worker routes by it (None: not in time).
    change_reached_s: float | None
    workers: int
    concurrency: int
    command: str

    @property
    def failed_invokes(self) -> int:
        return sum(self.ledger.failed.values())

    def row(self) -> Row:
        ledger = self.ledger
        reached = f"in {self.change_reached_s:.1f} s" if self.change_reached_s is not None else "NEVER"
        return Row(
            scenario="Redis outage",
            load=f"{ledger.rate('before'):.0f} invokes/s + feedback, {self.concurrency} clients, "
            f"{self.workers} workers ({ledger.rate('outage'):.0f}/s during the outage)",
            faults=f"redis-server SIGKILLed, down {self.outage_s:.0f} s, restarted on its AOF (fsync always)",
            requests=sum(ledger.invokes.values()),
            failed=self.failed_invokes,
            rewards_acknowledged=len(ledger.acknowledged),
            rewards_lost=self.books.rewards_lost,
            decisions_lost=self.books.decisions_lost,
            decisions_bound=0,
            command=self.command,
            notes=f"{sum(ledger.feedback_503.values())} feedback posts answered 503 + Retry-After during the "
            f"outage and sent again; /readyz 200 {self.ready_again_s:.1f} s after Redis returned; a config change "
            f"reached both workers by pub/sub {reached}",
        )


def run_redis_outage(
    warm_s: float = 3.0,
    outage_s: float = 3.0,
    after_s: float = 3.0,
    concurrency: int = 16,
    rate_per_s: float = 300.0,
    workers: int = 2,
    command: str = "python -m loadtest.faults --only redis",
) -> RedisOutage:
    """Kill our own Redis mid-load for `outage_s`, start it again, and reconcile every count."""
    name = f"outage-{int(time.time() * 1000) % 10**9}"
    models = ModelProcess(["v1:0.3", "v2:0.5", "v3:0.7"])
    with (
        tempfile.TemporaryDirectory(prefix="mab-aof-") as workdir,
        KillableRedis(Path(workdir)).running() as redis,
        models.running(),
        running_service(
            redis.url,
            log_dir() / f"{name}.log",
            workers=workers,
            BANDIT_REFRESH_INTERVAL=str(REFRESH_INTERVAL_S),
            BANDIT_FLUSH_INTERVAL="0.1",
        ) as service,
    ):
        service.create({"name": name, "arms": [{"name": n, "url": u} for n, u in models.urls.items()]})
        also_served: Counter[str] = Counter()
        wait_until(
            lambda: all("failed" not in arms for arms in _probe(service, name, also_served).values()),
            10,
            "every worker routing the experiment",
        )
        with BackgroundLoad(service.url, name, concurrency, rate_per_s) as load:
            load.sleep(warm_s)
            load.enter("outage")
            redis.kill()
            load.sleep(outage_s / 2)
            readyz_during = httpx.get(f"{service.url}/readyz", timeout=10).status_code
            load.sleep(outage_s / 2)
            redis.start()
            load.enter("after")
            ready_again_s = wait_until(
                lambda: httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200, 30, "/readyz 200 again"
            )
            load.sleep(after_s)
        # The subscription again, alone: the load has stopped, so no worker re-reads the experiment
        # for a reward (REWARDED_REFRESH_S). A short second outage, and a config change made the
        # moment Redis is back, while the workers may still be waiting to subscribe again: only
        # re-reading everything on resubscription can bring that change to all of them in time.
        redis.kill()
        time.sleep(SECOND_OUTAGE_S)
        redis.start()
        change_reached_s = _change_reaches_every_worker(service, name, also_served)
        books = reconcile(service, name, load.ledger, also_served)
    return RedisOutage(
        ledger=load.ledger,
        books=books,
        outage_s=outage_s,
        readyz_during=readyz_during,
        ready_again_s=ready_again_s,
        change_reached_s=change_reached_s,
        workers=workers,
        concurrency=concurrency,
        command=command,
    )


def _probe(service: Service, name: str, served: Counter[str]) -> dict[int, Counter[str]]:
    """PROBES invokes answered by each worker: {pid: arms chosen}; what they served is added to `served`."""
    return invoke_on_every_worker(service.port, service.workers(), name, PROBES, served)


def _change_reaches_every_worker(service: Service, name: str, served: Counter[str]) -> float | None:
    """Pin all traffic to v1, the arm the learned policy avoids, as soon as the service takes the
    change, and time until every worker routes by it; None if one still did not after CHANGE_WAIT_S."""
    with service.admin() as admin:
        change = {"policy": {"kind": "static", "weights": [1, 0, 0]}}
        wait_until(lambda: admin.patch(f"/api/experiments/{name}", json=change).status_code == 200, 10, "a PATCH")
    try:
        return wait_until(
            lambda: all(arms == {"v1": PROBES} for arms in _probe(service, name, served).values()),
            CHANGE_WAIT_S,
            "the config change on every worker",
        )
    except TimeoutError:
        return None
