"""A traffic generator that behaves like the service's clients: invoke, then report the outcome.

python -m loadtest.traffic --url http://127.0.0.1:8000 --experiment demo --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Tally:
    """What the clients saw and reported, to check the service's counts against."""

    decisions: Counter[str] = field(default_factory=Counter)
    rewards: Counter[str] = field(default_factory=Counter)
    reward_sum: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    failed: int = 0
    feedback_failed: int = 0
    # Status and start of the body of every failed request, by route, for the failure report.
    failures: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    recent_arms: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    # (decision id, arm, reward) of every invoke, for replaying feedback.
    outcomes: list[tuple[str, str, float]] = field(default_factory=list)


async def run_traffic(
    base_url: str,
    experiment: str,
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 8,
    send_feedback: bool = True,
    conversion: bool = False,
    rate_per_s: float | None = None,
    feedback_token: str | None = None,
) -> Tally:
    """Send invokes from `concurrency` clients until `requests` are done or `duration_s` passes."""
    tally = Tally()
    sent = 0
    deadline = time.monotonic() + duration_s if duration_s else None
    interval = concurrency / rate_per_s if rate_per_s else 0.0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    # Feedback carries a bearer token unless the service runs with BANDIT_FEEDBACK_OPEN=true.
    feedback_headers = {"Authorization": f"Bearer {feedback_token}"} if feedback_token else {}
    async with aiohttp.ClientSession(base_url, connector=connector) as session:

        async def client() -> None:
            nonlocal sent
            while (requests is None or sent < requests) and (deadline is None or time.monotonic() < deadline):
                sent += 1
                started = time.monotonic()
                async with session.post(f"/invoke/{experiment}/predict", json={"features": [1, 2, 3]}) as response:
                    if response.status != 200:
                        tally.failed += 1
                        tally.failures[("invoke", response.status, (await response.text())[:120])] += 1
                        continue
                    payload = await response.json()
                    arm = response.headers["X-Bandit-Arm"]
                    decision = response.headers["X-Bandit-Decision"]
                reward = float(payload["outcome"])
                tally.decisions[arm] += 1
                tally.recent_arms.append(arm)
                tally.outcomes.append((decision, arm, reward))
                if send_feedback and (reward > 0 or not conversion):
                    async with session.post(
                        "/feedback", json={"decision": decision, "reward": reward}, headers=feedback_headers
                    ) as answer:
                        if answer.status == 202:
                            tally.rewards[arm] += 1
                            tally.reward_sum[arm] += reward
                        else:
                            tally.feedback_failed += 1
                            tally.failures[("feedback", answer.status, (await answer.text())[:120])] += 1
                if interval:
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return tally


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, help="requests per second in all (default: as fast as it goes)")
    parser.add_argument(
        "--feedback-token",
        default=os.environ.get("BANDIT_FEEDBACK_TOKEN"),
        help="bearer token for /feedback (default: $BANDIT_FEEDBACK_TOKEN)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    tally = asyncio.run(
        run_traffic(
            args.url,
            args.experiment,
            args.requests,
            args.duration,
            args.concurrency,
            rate_per_s=args.rate,
            feedback_token=args.feedback_token,
        )
    )
    elapsed = time.monotonic() - started
    total = sum(tally.decisions.values())
    print(
        json.dumps(
            {
                "requests": total,
                "failed": tally.failed,
                "req_per_s": round(total / elapsed, 1),
                "decisions": dict(tally.decisions),
                "rewards": dict(tally.reward_sum),
            }
        )
    )


if __name__ == "__main__":
    main()
