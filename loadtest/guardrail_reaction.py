"""How fast the guardrails act: seconds from a fault to the cap, and from the heal to the restore.

python -m loadtest.guardrail_reaction [--rate 100] [--runs 3]

Two replicas (two workers each) on one Redis (db 11, flushed first), one model server process
whose arm "bad" can be broken. For each scenario and run: a new static 50/50 experiment of
arms good/bad, traffic with feedback at `--rate` through both replicas, 10 s healthy, then the
fault on; the audit log is polled every 0.1 s until the guardrail's "capped" entry, then the
fault is healed and the log polled until its "restored" entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from loadtest.faults.rig import ModelProcess, Service, log_dir, running_service
from loadtest.traffic import run_traffic

REDIS_URL = "redis://127.0.0.1:6379/11"
WARM_UP_S = 10.0
POLL_S = 0.1
#: How long after the cap the snapshots of both replicas have surely dropped the arm.
PROPAGATION_S = 0.5
CAP_TIMEOUT_S = 120.0
RESTORE_TIMEOUT_S = 300.0
#: Clients per replica: enough that 300 ms answers do not hold the rate below --rate.
CONCURRENCY = 16
SETTINGS = {
    "BANDIT_WORKERS": "2",
    "BANDIT_AUTOPILOT_INTERVAL": "1.0",
    "BANDIT_SERIES_BUCKET": "5",
}
COMMON_GUARDRAILS: dict[str, object] = {"min_decisions": 200, "window_s": 60, "cooldown_s": 30}


@dataclass(frozen=True)
class Scenario:
    name: str
    describe: str
    fault: Callable[[ModelProcess], None]
    guardrails: dict[str, object]


SCENARIOS = [
    Scenario(
        "errors",
        'arm "bad" answers 500 to 10 % of requests; max_error_rate 0.02',
        lambda models: models.set_behaviour("bad", "error", error_share=0.1),
        {"max_error_rate": 0.02, **COMMON_GUARDRAILS},
    ),
    Scenario(
        "latency",
        'arm "bad" 300 ms slow; max_p99_ms 250',
        lambda models: models.set_behaviour("bad", "slow", delay_ms=300),
        {"max_p99_ms": 250, **COMMON_GUARDRAILS},
    ),
]


@dataclass
class Result:
    scenario: str
    run: int
    fault_to_cap_s: float
    bad_requests_to_cap: int
    bad_requests_to_propagated: int
    heal_to_restored_s: float | None
    bad_share_before: float


class Traffic:
    """Invokes with feedback through every replica (an equal share of `rate_per_s` each), until stopped."""

    def __init__(self, urls: list[str], name: str, rate_per_s: float) -> None:
        self.stopping = threading.Event()
        self.failed = 0
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(urls, name, rate_per_s),), daemon=True)
        self.thread.start()

    async def _run(self, urls: list[str], name: str, rate_per_s: float) -> None:
        share = rate_per_s / len(urls)
        while not self.stopping.is_set():
            tallies = await asyncio.gather(
                *(run_traffic(url, name, duration_s=1.0, concurrency=CONCURRENCY, rate_per_s=share) for url in urls)
            )
            self.failed += sum(tally.failed for tally in tallies)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def audit(admin: httpx.Client, name: str) -> list[dict[str, Any]]:
    reply = admin.get(f"/api/experiments/{name}/audit", params={"limit": 1000})
    reply.raise_for_status()
    entries: list[dict[str, Any]] = reply.json()
    return entries


def bad_requests(admin: httpx.Client, name: str) -> tuple[int, int]:
    """Requests arm "bad" served (decisions + errors) and those of all arms, from the shared counts."""
    reply = admin.get(f"/api/experiments/{name}/stats")
    reply.raise_for_status()
    arms = {arm["name"]: int(arm["decisions"]) + int(arm["errors"]) for arm in reply.json()["arms"]}
    return arms["bad"], sum(arms.values())


def wait_for_entry(admin: httpx.Client, name: str, action: str, timeout_s: float) -> dict[str, Any] | None:
    """Poll the audit log every POLL_S until the guardrail's `action` entry on arm "bad" is in it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            for entry in audit(admin, name):
                if entry["actor"] == "guardrail" and entry["action"] == action and entry["arm"] == "bad":
                    return entry
        time.sleep(POLL_S)
    return None


def one_run(scenario: Scenario, run: int, services: list[Service], models: ModelProcess, rate: float) -> Result | None:
    name = f"reaction-{scenario.name}-{run}-{secrets.token_hex(3)}"
    experiment = {
        "name": name,
        "arms": [{"name": "good", "url": models.urls["good"]}, {"name": "bad", "url": models.urls["bad"]}],
        "policy": {"kind": "static", "weights": [0.5, 0.5]},
        "guardrails": scenario.guardrails,
    }
    models.set_behaviour("bad", "ok")
    services[0].create(experiment)
    traffic = Traffic([service.url for service in services], name, rate)
    try:
        with services[0].admin() as admin:
            time.sleep(WARM_UP_S)
            bad_before, all_before = bad_requests(admin, name)
            scenario.fault(models)
            fault_at = time.time()
            capped = wait_for_entry(admin, name, "capped", CAP_TIMEOUT_S)
            if capped is None:
                print(f"  {scenario.name} run {run}: no cap within {CAP_TIMEOUT_S:.0f} s", flush=True)
                return None
            bad_at_cap, _ = bad_requests(admin, name)
            time.sleep(PROPAGATION_S)
            bad_propagated, _ = bad_requests(admin, name)
            models.set_behaviour("bad", "ok")
            healed_at = time.time()
            restored = wait_for_entry(admin, name, "restored", RESTORE_TIMEOUT_S)
            steps = [entry["action"] for entry in audit(admin, name) if entry["actor"] == "guardrail"]
    finally:
        traffic.stop()
        models.set_behaviour("bad", "ok")
    result = Result(
        scenario=scenario.name,
        run=run,
        fault_to_cap_s=float(capped["at"]) - fault_at,
        bad_requests_to_cap=bad_at_cap - bad_before,
        bad_requests_to_propagated=bad_propagated - bad_before,
        heal_to_restored_s=float(restored["at"]) - healed_at if restored is not None else None,
        bad_share_before=bad_before / all_before if all_before else 0.0,
    )
    heal = f"{result.heal_to_restored_s:.1f} s" if result.heal_to_restored_s is not None else "not restored"
    print(
        f"  {scenario.name} run {run}: fault→cap {result.fault_to_cap_s:.1f} s "
        f"({result.bad_requests_to_cap} bad-arm requests), heal→restored {heal}; "
        f"guardrail steps {steps}; {traffic.failed} invokes failed",
        flush=True,
    )
    return result


def _seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(results: list[Result]) -> str:
    header = (
        "| scenario | run | s fault→cap | bad-arm requests fault→cap | … until cap propagated (+0.5 s) "
        "| s heal→restored |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for result in results:
        lines.append(
            f"| {result.scenario} | {result.run} | {result.fault_to_cap_s:.1f} | {result.bad_requests_to_cap} "
            f"| {result.bad_requests_to_propagated} | {_seconds(result.heal_to_restored_s)} |"
        )
    for scenario in dict.fromkeys(result.scenario for result in results):
        mine = [result for result in results if result.scenario == scenario]
        heals = [result.heal_to_restored_s for result in mine if result.heal_to_restored_s is not None]
        lines.append(
            f"| {scenario} | median | {statistics.median(r.fault_to_cap_s for r in mine):.1f} "
            f"| {statistics.median(r.bad_requests_to_cap for r in mine):.0f} "
            f"| {statistics.median(r.bad_requests_to_propagated for r in mine):.0f} "
            f"| {_seconds(statistics.median(heals) if heals else None)} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def replicas(count: int) -> Iterator[list[Service]]:
    token = secrets.token_urlsafe(16)
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                running_service(
                    REDIS_URL,
                    log_dir() / f"guardrail-reaction-{index}.log",
                    workers=2,
                    BANDIT_ADMIN_TOKEN=token,
                    **SETTINGS,
                )
            )
            for index in range(count)
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second in all (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    print(
        f"Guardrail reaction: static 50/50 good/bad, {args.rate:g} req/s with feedback through 2 replicas "
        f"x 2 workers, {WARM_UP_S:g} s healthy warm-up; {SETTINGS}; guardrails {COMMON_GUARDRAILS} "
        "(retry_share default 0.05).",
        flush=True,
    )
    print(
        "Note: the machine has 2 cores shared by the load generator, both services, Redis and the model servers.",
        flush=True,
    )
    results: list[Result] = []
    with ModelProcess(["good:0.9", "bad:0.9"], control=True).running() as models, replicas(2) as services:
        for scenario in SCENARIOS:
            print(f"{scenario.name}: {scenario.describe}", flush=True)
            for run in range(1, args.runs + 1):
                result = one_run(scenario, run, services, models, args.rate)
                if result is not None:
                    results.append(result)
    print()
    print("Machine: 2 cores shared by load generator, services, Redis and model servers.")
    print(table(results))


if __name__ == "__main__":
    main()
