"""Regret through the running service: simulated models, `mab serve`, and clients that report rewards.

    python -m loadtest.regret_service --scenario S1 --seeds 3 --clients 16 [--policy '{"kind": "thompson"}']

Per seed: a fresh experiment, then `--clients` concurrent clients make exactly T
invokes in all. Step t is a shared counter taken when an invoke returns; the client
draws the reward of the arm the service chose from the scenario's table for that seed
(the in-process benchmark's draws), posts it to /feedback and adds the arm's
pseudo-regret at t. The in-process regret of the same policy is computed alongside
(or passed with --compare) to show what the service's snapshots and delays cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import msgspec
import numpy as np

from bandit.cli.local_redis import free_port
from bandit.core.models import Experiment
from bandit.core.policy_adapter import build_policy, observation_rules
from loadtest.processes import model_urls, spawn, stop, wait_http
from loadtest.regret import Contender, decision_seed, play_ours
from loadtest.regret_scenarios import DEFAULT_HORIZON, SCENARIOS, Scenario
from policies import GradientStep, PageHinkley

#: Seconds a child process gets to exit after SIGTERM before its whole group is killed.
#: Index under which the service's policy seeds its in-process decisions (apart from the benchmark's table).
SERVICE_CONTENDER_INDEX = 500
#: Feedback arrives within seconds here; the window also bounds how long the experiment's keys outlive it.
FEEDBACK_WINDOW_S = 600


def reward_spec(scenario: Scenario) -> dict[str, Any]:
    """The experiment's reward settings: 0/1 feedback, or 1{correct} with the service charging latency."""
    # A short feedback window: deleting an experiment leaves its deduplication keys to expire with it.
    if scenario.latency_s is None:
        return {"mode": "explicit", "window_s": FEEDBACK_WINDOW_S, "bounds": [0, 1]}
    # The models answer in latency_s milliseconds, so λ per second is 1000× the scenario's per-"second" penalty.
    penalty = 1000 * scenario.latency_penalty
    return {"mode": "explicit", "window_s": FEEDBACK_WINDOW_S, "bounds": None, "latency_penalty": penalty}


def experiment_payload(name: str, urls: dict[str, str], policy: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    arms = [{"name": arm, "url": url} for arm, url in urls.items()]
    return {"name": name, "arms": arms, "policy": policy, "reward": reward_spec(scenario)}


# ─── Processes ───


def spawn_python(stack: ExitStack, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python args…` in its own process group, stopped when `stack` closes."""
    process = spawn([sys.executable, *args], env=env)
    stack.callback(stop, process)
    return process


def start_models(stack: ExitStack, scenario: Scenario) -> dict[str, str]:
    """One simulated model server per arm; {arm name: url}. Their own reward rates go unused here."""
    specs = []
    for k, rate in enumerate(scenario.phases[0].rates):
        # NAME:RATE:PORT:MS, port 0 = any free one; S5's latencies are served in milliseconds.
        latency = f":0:{scenario.latency_s[k]}" if scenario.latency_s is not None else ""
        specs.append(f"--arm=a{k}:{rate}{latency}")
    return model_urls(spawn_python(stack, ["-m", "loadtest.model_server", *specs]))


def start_service(stack: ExitStack, redis_url: str, token: str, refresh_interval_s: float | None) -> str:
    """`python -m bandit serve` on a free port; its base URL once /readyz answers 200."""
    port = free_port()
    env = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_ADMIN_TOKEN": token,
        # Benches post rewards without a token, as a client of an open feedback API would.
        "BANDIT_FEEDBACK_OPEN": "true",
        "BANDIT_SECRET": secrets.token_urlsafe(16),
        "BANDIT_PORT": str(port),
        "BANDIT_LOG_LEVEL": "warning",
    }
    if refresh_interval_s is not None:
        env["BANDIT_REFRESH_INTERVAL"] = str(refresh_interval_s)
    service = spawn_python(stack, ["-m", "bandit", "serve"], env)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", service, "the service")
    return base


# ─── One seed through the service ───


@dataclass
class SeedRun:
    """What the clients of one seed saw."""

    seed: int
    steps: int = 0
    regret: float = 0.0
    failed: int = 0
    feedback_failed: int = 0
    elapsed_s: float = 0.0

    @property
    def invokes_per_s(self) -> float:
        return self.steps / self.elapsed_s if self.elapsed_s else 0.0


class SeedClients:
    """The shared state of the clients of one seed: step counter, reward draws, regret, pending feedback."""

    def __init__(self, scenario: Scenario, seed: int, horizon: int, arms: list[str]) -> None:
        self.scenario = scenario
        self.horizon = horizon
        self.arm_index = {name: k for k, name in enumerate(arms)}
        # The client reports 1{correct}; with a latency penalty the service subtracts the cost itself.
        self.feedback = scenario.success_table(seed, horizon).tolist()
        means = scenario.expected_rewards(horizon)
        self.gaps = (means.max(axis=1, keepdims=True) - means).tolist()
        self.issued = 0
        self.pending: list[dict[str, Any]] = []
        self.run = SeedRun(seed)

    def take_invoke(self) -> bool:
        """Claim one of the T invokes; False once all are claimed."""
        if self.issued >= self.horizon:
            return False
        self.issued += 1
        return True

    def step(self, arm: str, decision: str) -> dict[str, Any]:
        """Count a returned invoke as step t; the feedback item to send for it."""
        t, k = self.run.steps, self.arm_index[arm]
        self.run.steps += 1
        self.run.regret += self.gaps[t][k]
        return {"decision": decision, "reward": self.feedback[t][k]}

    def due_batch(self, item: dict[str, Any], last: bool = False) -> list[dict[str, Any]]:
        """The feedback to send now: each item at once, or whole blocks of `batch` decisions."""
        self.pending.append(item)
        if len(self.pending) < self.scenario.batch and not last:
            return []
        due, self.pending = self.pending, []
        return due


async def post_feedback(session: aiohttp.ClientSession, items: list[dict[str, Any]]) -> int:
    """Send rewards (one, or a batch as `items`); how many were not accepted."""
    body: dict[str, Any] = items[0] if len(items) == 1 else {"items": items}
    try:
        async with session.post("/feedback", json=body) as answer:
            if answer.status != 202:
                return len(items)
            result = await answer.json()
            return len(items) - int(result["accepted"])
    except aiohttp.ClientError:
        return len(items)


async def drive(base: str, experiment: str, clients: SeedClients, concurrency: int) -> SeedRun:
    """`concurrency` clients invoking and reporting until T invokes are made."""
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    run = clients.run
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while clients.take_invoke():
                try:
                    async with session.post(f"/invoke/{experiment}/predict", json={"features": [1, 2, 3]}) as answer:
                        await answer.read()
                        if answer.status != 200:
                            run.failed += 1
                            continue
                        arm, decision = answer.headers["X-Bandit-Arm"], answer.headers["X-Bandit-Decision"]
                except aiohttp.ClientError:
                    run.failed += 1
                    continue
                due = clients.due_batch(clients.step(arm, decision))
                if due:
                    run.feedback_failed += await post_feedback(session, due)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        run.elapsed_s = time.monotonic() - started
        if clients.pending:
            run.feedback_failed += await post_feedback(session, clients.pending)
    return run


def run_seed(base: str, token: str, urls: dict[str, str], args: argparse.Namespace, seed: int) -> SeedRun:
    """Create a fresh experiment, drive it for T invokes, delete it."""
    scenario = SCENARIOS[args.scenario]
    name = f"regret-{scenario.name.lower()}-{seed}-{secrets.token_hex(3)}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as admin:
        created = admin.post("/api/experiments", json=experiment_payload(name, urls, args.policy, scenario))
        if created.status_code != 201:
            raise SystemExit(f"creating the experiment failed ({created.status_code}): {created.text}")
        try:
            clients = SeedClients(scenario, seed, args.horizon, list(urls))
            return asyncio.run(drive(base, name, clients, args.clients))
        finally:
            admin.delete(f"/api/experiments/{name}")


# ─── The same policy in process ───


def service_contender(policy: dict[str, Any], scenario: Scenario) -> Contender:
    """The policy and statistics rules the service builds from `policy`, as an in-process contender."""
    arms = [{"name": f"a{k}", "url": "http://127.0.0.1:9"} for k in range(scenario.arms)]
    payload = {"name": "in-process", "arms": arms, "policy": policy, "reward": reward_spec(scenario)}
    experiment = msgspec.convert(payload, Experiment)
    built = build_policy(experiment, list(range(scenario.arms)))
    rules = observation_rules(experiment)
    tracker: dict[str, Any] = {"discount": rules.discount}
    if rules.change_detection is not None:
        detector = rules.change_detection
        tracker["change_detection"] = PageHinkley(detector.delta, detector.threshold, detector.action)
    if rules.gradient is not None:
        gradient = rules.gradient
        tracker["gradient"] = GradientStep(gradient.step_size, gradient.momentum, gradient.baseline)
    return Contender(json.dumps(policy), lambda s: built, tracker)


def in_process_regret(job: tuple[str, str, int, int]) -> float:
    """Pseudo-regret of the service's policy run in process on one seed's draws: (policy JSON, scenario, seed, T)."""
    policy_json, scenario_name, seed, horizon = job
    scenario = SCENARIOS[scenario_name]
    contender = service_contender(json.loads(policy_json), scenario)
    rng = np.random.default_rng(decision_seed(seed, "ours", SERVICE_CONTENDER_INDEX))
    # In process the reward is computed with the nominal latency; the service measures its own.
    return scenario.pseudo_regret(play_ours(contender, scenario, scenario.reward_table(seed, horizon), rng))


def in_process_regrets(policy: dict[str, Any], scenario: str, seeds: int, horizon: int, processes: int) -> list[float]:
    jobs = [(json.dumps(policy), scenario, seed, horizon) for seed in range(seeds)]
    with multiprocessing.Pool(processes) as pool:
        return pool.map(in_process_regret, jobs)


# ─── Report ───


def mean_and_error(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values)
    error = float(array.std(ddof=1) / np.sqrt(array.size)) if array.size > 1 else float("nan")
    return float(array.mean()), error


def plus_minus(mean: float, error: float) -> str:
    return f"{mean:.1f}" if np.isnan(error) else f"{mean:.1f} ± {error:.1f}"


def report(runs: list[SeedRun], compare: tuple[float, float, int] | None) -> None:
    """Per-seed lines, then the means, throughput, failures and the comparison with in-process."""
    print(f"\n  {'seed':>4}{'steps':>8}{'regret':>10}{'invokes/s':>11}{'failed':>8}{'feedback failed':>17}")
    for run in runs:
        print(
            f"  {run.seed:>4}{run.steps:>8}{run.regret:>10.1f}{run.invokes_per_s:>11.0f}{run.failed:>8}"
            f"{run.feedback_failed:>17}"
        )
    service_mean, service_error = mean_and_error([run.regret for run in runs])
    total_s = sum(run.elapsed_s for run in runs)
    print(f"\n  through the service: {plus_minus(service_mean, service_error)} over {len(runs)} seeds")
    print(f"  invokes/s (each + its feedback): {sum(run.steps for run in runs) / total_s:.0f}")
    print(
        f"  failed invokes: {sum(run.failed for run in runs)}, feedback not accepted: "
        f"{sum(run.feedback_failed for run in runs)}"
    )
    if compare is None:
        print("  in process: not computed (--compare-seeds 0 and no --compare)")
        return
    mean, error, seeds = compare
    source = f"over {seeds} seeds" if seeds else "(given by --compare)"
    print(f"  in process, same policy: {plus_minus(mean, error)} {source}")
    print(f"  service / in-process: {service_mean / mean:.2f}" if mean else "  service / in-process: -")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="S1", choices=sorted(SCENARIOS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=DEFAULT_HORIZON)
    parser.add_argument("--policy", type=json.loads, default={"kind": "thompson"}, help='e.g. \'{"kind": "thompson"}\'')
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--refresh-interval", type=float, help="service snapshot refresh, s (default: the service's)")
    parser.add_argument("--compare", type=float, help="in-process mean regret of the same policy, if known")
    parser.add_argument("--compare-seeds", type=int, default=50, help="seeds of the in-process run (0: skip)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the in-process run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    token = secrets.token_urlsafe(16)
    print(
        f"Regret through the service — 2-core machine; the service, {scenario.arms} model servers and "
        f"{args.clients} clients share it.\n{scenario.name}: {scenario.description}; T = {args.horizon:,}; "
        f"policy {json.dumps(args.policy)}; reward {json.dumps(reward_spec(scenario))}",
        flush=True,
    )
    if scenario.latency_s is not None:
        served = "/".join(f"{latency:g}" for latency in scenario.latency_s)
        print(f"Models answer in {served} ms; the service subtracts latency_penalty × its measured latency (s).")
    runs = []
    with ExitStack() as stack:
        urls = start_models(stack, scenario)
        base = start_service(stack, args.redis_url, token, args.refresh_interval)
        for seed in range(args.seeds):
            runs.append(run_seed(base, token, urls, args, seed))
            print(f"  seed {seed}: regret {runs[-1].regret:.1f}", file=sys.stderr, flush=True)
    # Computed once the service has stopped, so it does not compete for the two cores.
    compare: tuple[float, float, int] | None = None
    if args.compare is not None:
        compare = (args.compare, float("nan"), 0)
    elif args.compare_seeds > 0:
        regrets = in_process_regrets(args.policy, args.scenario, args.compare_seeds, args.horizon, args.processes)
        compare = (*mean_and_error(regrets), args.compare_seeds)
    report(runs, compare)


if __name__ == "__main__":
    main()
