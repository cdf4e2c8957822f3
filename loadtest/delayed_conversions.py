"""Delayed conversions through the service: the pending bias of counting open decisions as failures, and its fix.

    python -m loadtest.delayed_conversions [--seeds 3] [--seconds 180] [--rate 60]

Three model versions convert at hidden rates 0.04 / 0.05 / 0.07; each conversion is reported
after an exponential delay (mean 30 s), and only within the window (120 s). Per seed, two
Thompson-sampling experiments take the same traffic side by side on one service: one with
`reward.pending: "failure"` (an open decision counts as a failure, what earlier releases did),
one with `"exposure"` (each open decision counts by the chance its conversion would have been
seen by its age, bandit/core/pending_conversions.py). At the end, while conversions are still
arriving, each arm's mean (from `GET /stats`) is compared with its true rate within the window
(rate × P(delay < 120 s)), and the regret of each run (Σ decisions × (best rate − arm rate)).
Redis db 11 is FLUSHED. The machine has 2 cores, shared by this load generator, the service,
Redis and the model servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
import time

import httpx
import redis

from loadtest.faults.rig import ModelProcess, log_dir, running_service

REDIS_URL = "redis://127.0.0.1:6379/11"
RATES = {"v1": 0.04, "v2": 0.05, "v3": 0.07}
MEAN_DELAY_S = 30.0
WINDOW_S = 120
WITHIN = 1 - math.exp(-WINDOW_S / MEAN_DELAY_S)  # P(delay < window)


async def _traffic(url: str, name: str, rate: float, seconds: float, rng: random.Random) -> None:
    """Invokes at `rate`/s for `seconds`; each conversion reported after its delay, if within the window."""
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def convert(decision: str, delay: float) -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(httpx.HTTPError):
                await client.post("/feedback", json={"decision": decision, "reward": 1})

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = await client.post(f"/invoke/{name}/predict", json={})
            if answer.status_code == 200 and answer.json()["outcome"]:
                delay = rng.expovariate(1 / MEAN_DELAY_S)
                if delay < WINDOW_S:
                    task = asyncio.create_task(convert(answer.headers["X-Bandit-Decision"], delay))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        for task in pending:
            task.cancel()


def _summary(admin: httpx.Client, name: str) -> dict[str, tuple[int, float | None]]:
    arms = admin.get(f"/api/experiments/{name}/stats").json()["arms"]
    return {arm["name"]: (arm["decisions"], arm["mean"]) for arm in arms}


def _regret(arms: dict[str, tuple[int, float | None]]) -> float:
    best = max(RATES.values())
    return sum(decisions * (best - RATES[arm]) for arm, (decisions, _mean) in arms.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=180.0, help="traffic per seed")
    parser.add_argument("--rate", type=float, default=60.0, help="invokes per second per experiment")
    args = parser.parse_args(argv)
    redis.Redis.from_url(REDIS_URL).flushdb()
    specs = [f"{arm}:{rate}" for arm, rate in RATES.items()]
    rows = []
    with ModelProcess(specs).running() as models, running_service(REDIS_URL, log_dir() / "delayed.log") as service:
        admin = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.token}"}, timeout=30)
        for seed in range(args.seeds):
            names = {pending: f"delayed-{pending}-{seed}" for pending in ("failure", "exposure")}
            for pending, name in names.items():
                body = {
                    "name": name,
                    "arms": [{"name": arm, "url": url} for arm, url in models.urls.items()],
                    "policy": {"kind": "thompson"},
                    "reward": {"mode": "conversion", "window_s": WINDOW_S, "pending": pending},
                }
                admin.post("/api/experiments", json=body).raise_for_status()

            async def both(seed: int = seed, names: dict[str, str] = names) -> None:
                await asyncio.gather(
                    *(
                        _traffic(service.url, name, args.rate, args.seconds, random.Random(seed * 2 + index))
                        for index, name in enumerate(names.values())
                    )
                )

            asyncio.run(both())
            time.sleep(0.5)  # the last decision counts flushed
            for pending, name in names.items():
                arms = _summary(admin, name)
                for arm, (decisions, mean) in arms.items():
                    truth = RATES[arm] * WITHIN
                    rows.append((seed, pending, arm, decisions, truth, mean, _regret(arms)))
    print(__doc__.split("\n\n")[0])
    print(f"{args.seeds} seeds x {args.seconds:g} s at {args.rate:g} invokes/s per experiment; 2 cores shared by all")
    print(f"{'seed':>4} {'pending':>9} {'arm':>4} {'decisions':>9} {'true':>7} {'mean':>7} {'bias':>8}")
    for seed, pending, arm, decisions, truth, mean, _regret_value in rows:
        bias = "" if mean is None else f"{(mean - truth) / truth:+7.1%}"
        shown = "  -" if mean is None else f"{mean:.4f}"
        print(f"{seed:>4} {pending:>9} {arm:>4} {decisions:>9} {truth:7.4f} {shown:>7} {bias:>8}")
    for pending in ("failure", "exposure"):
        biases = [
            (mean - truth) / truth for _s, p, _a, _d, truth, mean, _r in rows if p == pending and mean is not None
        ]
        regrets = sorted({(seed, regret) for seed, p, *_rest, regret in rows if p == pending})
        print(
            f"{pending:>9}: mean relative bias {statistics.mean(biases):+.1%} over {len(biases)} arms, "
            f"regret per seed {[round(regret, 1) for _seed, regret in regrets]} "
            f"(mean {statistics.mean(regret for _seed, regret in regrets):.1f} conversions)"
        )


if __name__ == "__main__":
    main()
