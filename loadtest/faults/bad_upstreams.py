"""Upstreams gone bad under load: one killed, one answering 500s, one slower than its read timeout.

What must hold while at least one arm is healthy: under 1 % of client requests fail
(only those caught before an arm is ejected); each bad arm shows as unhealthy in
`/api/experiments/{name}/stats` and gets no traffic at all once ejected; when the arms
heal, the health probe readmits them and they take traffic again.

Four arms on an equal static split, so each bad arm would get a quarter of the traffic
if it were not excluded. The killed arm runs in a process of its own (SIGKILLed, then
restarted on its port); the other two are switched through the model server's control API.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from loadtest.faults.books import Books, reconcile
from loadtest.faults.load import BackgroundLoad, Ledger
from loadtest.faults.report import Row
from loadtest.faults.rig import ModelProcess, Service, log_dir, running_service, wait_until

BAD_ARMS = ("dead", "failing", "slow")
#: The slow arm's read timeout, and how much longer it takes when it turns slow.
READ_TIMEOUT_S = 0.5
SLOW_MS = 3000.0


@dataclass(frozen=True, slots=True)
class BadUpstreams:
    ledger: Ledger
    books: Books
    # Per-arm `health` in the stats once the faults were injected, and after healing.
    health_during: dict[str, str]
    health_after: dict[str, str]
    # Attempts (decisions + errors) per arm while the bad arms were ejected, and after they healed.
    attempts_while_ejected: Counter[str]
    attempts_after_healing: Counter[str]
    excluded_s: float
    readmitted_s: float
    excluded_window_s: float
    probe_interval_s: float
    concurrency: int
    command: str

    @property
    def failed(self) -> int:
        return sum(self.ledger.failed.values())

    @property
    def requests(self) -> int:
        return sum(self.ledger.invokes.values())

    def row(self) -> Row:
        ledger = self.ledger
        failures: Counter[str] = Counter()
        for (_, route, what), n in ledger.failures.items():
            failures[f"{route} {what}"] += n
        return Row(
            scenario="Dead or flaky upstreams",
            load=f"{ledger.rate('faults'):.0f} invokes/s + feedback, {self.concurrency} clients, 1 worker, "
            "4 arms on an equal split",
            faults=f"arm killed (SIGKILL), arm answering 500, arm {SLOW_MS / 1000:.0f} s slow "
            f"(read timeout {READ_TIMEOUT_S} s); then all healed",
            requests=self.requests,
            failed=self.failed,
            rewards_acknowledged=len(ledger.acknowledged),
            rewards_lost=self.books.rewards_lost,
            decisions_lost=self.books.decisions_lost,
            decisions_bound=0,
            command=self.command,
            notes=f"failed by status {dict(failures)}; all 3 ejected {self.excluded_s:.1f} s after the faults, "
            f"then {dict(self.attempts_while_ejected)} attempts per arm in {self.excluded_window_s:.0f} s; "
            f"readmitted {self.readmitted_s:.1f} s after healing (probe every {self.probe_interval_s} s), then "
            f"{dict(self.attempts_after_healing)}",
        )


def run_bad_upstreams(
    redis_url: str,
    warm_s: float = 2.0,
    excluded_s: float = 4.0,
    healed_s: float = 3.0,
    concurrency: int = 16,
    rate_per_s: float = 400.0,
    probe_interval_s: float = 0.5,
    command: str = "python -m loadtest.faults --only upstreams",
) -> BadUpstreams:
    """Break three of four arms mid-load, hold, heal them, and watch health and traffic."""
    name = f"upstreams-{int(time.time() * 1000) % 10**9}"
    steady = ModelProcess(["healthy:0.5", "failing:0.5", "slow:0.5"], control=True)
    doomed = ModelProcess(["dead:0.5"])
    with (
        steady.running(),
        doomed.running(),
        running_service(redis_url, log_dir() / f"{name}.log", BANDIT_PROBE_INTERVAL=str(probe_interval_s)) as service,
    ):
        urls = {**steady.urls, **doomed.urls}
        arms: list[dict[str, Any]] = [{"name": n, "url": u, "health_path": "/health"} for n, u in urls.items()]
        for arm in arms:
            if arm["name"] == "slow":
                arm["read_timeout_s"] = READ_TIMEOUT_S
        service.create({"name": name, "arms": arms, "policy": {"kind": "static", "weights": [1] * len(arms)}})
        with BackgroundLoad(service.url, name, concurrency, rate_per_s) as load:
            load.sleep(warm_s)
            load.enter("faults")
            doomed.kill()
            # Their /health keeps answering 200: only what real requests meet can reveal these two.
            steady.set_behaviour("failing", "error", health=False)
            steady.set_behaviour("slow", "slow", SLOW_MS, health=False)
            health_during: dict[str, str] = {}

            def all_ejected() -> bool:
                # Kept as read: a moment later a trial on probation may show as "probation".
                health_during.update(_health(service, name))
                return all(health_during[arm] == "ejected" for arm in BAD_ARMS)

            excluded_after_s = wait_until(all_ejected, 30, "bad arms ejected")
            # Requests sent before the ejection may still be waiting out the read timeout.
            load.sleep(READ_TIMEOUT_S + 1.0)
            load.enter("excluded")
            before = _attempts(service, name)
            started = time.monotonic()
            load.sleep(excluded_s)
            while_ejected = _attempts_since(service, name, before)
            window_s = time.monotonic() - started
            load.enter("healing")
            doomed.start()
            steady.set_behaviour("failing", "ok")
            steady.set_behaviour("slow", "ok")
            readmitted_s = wait_until(
                lambda: all(state == "healthy" for state in _health(service, name).values()), 30, "arms readmitted"
            )
            load.enter("healed")
            before = _attempts(service, name)
            load.sleep(healed_s)
            after_healing = _attempts_since(service, name, before)
            health_after = _health(service, name)
        books = reconcile(service, name, load.ledger)
    return BadUpstreams(
        ledger=load.ledger,
        books=books,
        health_during=health_during,
        health_after=health_after,
        attempts_while_ejected=while_ejected,
        attempts_after_healing=after_healing,
        excluded_s=excluded_after_s,
        readmitted_s=readmitted_s,
        excluded_window_s=window_s,
        probe_interval_s=probe_interval_s,
        concurrency=concurrency,
        command=command,
    )


def _health(service: Service, name: str) -> dict[str, str]:
    return {arm: stats["health"] for arm, stats in service.arms(name).items()}


def _attempts(service: Service, name: str) -> Counter[str]:
    """Requests each arm was sent so far: served (decisions) and failed (errors), as flushed."""
    return Counter({arm: stats["decisions"] + stats["errors"] for arm, stats in service.arms(name).items()})


def _attempts_since(service: Service, name: str, before: Counter[str]) -> Counter[str]:
    """Attempts per arm since `before`, read once the recorder has flushed what was counted meanwhile."""
    time.sleep(1.0)  # many flush intervals
    now = _attempts(service, name)
    return Counter({arm: now[arm] - before[arm] for arm in now})
