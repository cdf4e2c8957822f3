"""Load that keeps going through faults, and the books it keeps to check the service against.

Clients invoke, then report each outcome as feedback, like `loadtest.traffic`, but a
fault never stops them: a refused connection or a 5xx is counted as a failed request
and the client goes on. Feedback answered 503 (Redis away) or lost to a broken
connection is kept and sent again after the Retry-After the service asked for, as a
careful client would; only a 202 makes a reward *acknowledged*. After the run every
acknowledged reward must be in Redis, and nothing else.

The load runs on its own thread and event loop, so the scenario that drives it can
block on processes (kill, restart, wait) without stalling the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: Rewards sent again per request by the retrying client.
RETRY_BATCH = 100
#: Used when a 503 carries no Retry-After (the scenario also counts those as defects).
DEFAULT_RETRY_S = 1.0


@dataclass
class Ledger:
    """What the clients saw, by phase, and every reward the service acknowledged."""

    invokes: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    # (phase, route, status or exception name) of every failed request.
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    feedback_503: Counter[str] = field(default_factory=Counter)
    feedback_503_without_retry_after: int = 0
    # decision id -> (arm, reward): answered 202 (accepted or duplicate), so it must be counted.
    acknowledged: dict[str, tuple[str, float]] = field(default_factory=dict)
    # decision id -> (arm, reward): sent, but not acknowledged yet; retried until it is.
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Rewards the service refused outright (never expected here): (decision, status, reason).
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    # Seconds each phase lasted, for the rate held.
    phase_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def acknowledged_by_arm(self) -> tuple[Counter[str], dict[str, float]]:
        """(rewards, reward sum) per arm over the acknowledged rewards."""
        count: Counter[str] = Counter()
        total: defaultdict[str, float] = defaultdict(float)
        for arm, reward in self.acknowledged.values():
            count[arm] += 1
            total[arm] += reward
        return count, dict(total)

    def rate(self, phase: str) -> float:
        """Invokes per second held during `phase`."""
        seconds = self.phase_seconds[phase]
        return self.invokes[phase] / seconds if seconds else 0.0


class BackgroundLoad:
    """`concurrency` clients at about `rate_per_s` invokes/s against one experiment, on a thread.

    with BackgroundLoad(url, "exp") as load:
        load.enter("outage"); ...; load.enter("after")
    # leaving the block stops the clients and retries pending feedback until acknowledged.
    """

    def __init__(
        self,
        base_url: str,
        experiment: str,
        concurrency: int = 16,
        rate_per_s: float | None = 400.0,
        feedback: bool = True,
        drain_timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self.experiment = experiment
        self.concurrency = concurrency
        self.rate_per_s = rate_per_s
        self.feedback = feedback
        self.drain_timeout_s = drain_timeout_s
        self.ledger = Ledger()
        self.phase = "before"
        self._phase_started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_thread, name="fault-load", daemon=True)
        self._error: BaseException | None = None

    # -- driven from the scenario's thread ----------------------------------------
    def __enter__(self) -> BackgroundLoad:
        self._phase_started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        self.enter("drain")
        if error_type is not None:
            self.drain_timeout_s = 0.0  # the scenario failed: its figures will not be read
        self._stop.set()
        self._thread.join(timeout=self.drain_timeout_s + 30)
        if self._error is not None:
            raise RuntimeError("the load generator failed") from self._error

    def enter(self, phase: str) -> None:
        """Count what follows under `phase` (e.g. "before", "outage", "after")."""
        now = time.monotonic()
        self.ledger.phase_seconds[self.phase] += now - self._phase_started
        self.phase, self._phase_started = phase, now

    def sleep(self, seconds: float) -> None:
        """Let the load run for `seconds` (fails early if the load generator died)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the load generator stopped early") from self._error
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    # -- the load's own thread and loop -------------------------------------------
    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to the scenario by __exit__
            self._error = error

    async def _main(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self.base_url, connector=connector, timeout=timeout) as session:
            retrier = asyncio.create_task(self._retry_pending(session))
            await asyncio.gather(*(self._client(session) for _ in range(self.concurrency)))
            # The clients have stopped: the retrier goes on until nothing is pending, or the timeout.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(retrier, self.drain_timeout_s)

    async def _client(self, session: aiohttp.ClientSession) -> None:
        interval = self.concurrency / self.rate_per_s if self.rate_per_s else 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            await self._invoke(session)
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _invoke(self, session: aiohttp.ClientSession) -> None:
        ledger, phase = self.ledger, self.phase
        ledger.invokes[phase] += 1
        try:
            async with session.post(f"/invoke/{self.experiment}/predict", json={"features": [1, 2, 3]}) as response:
                if response.status != 200:
                    self._failed(phase, "invoke", str(response.status))
                    await response.read()
                    return
                payload = await response.json()
                arm = response.headers["X-Bandit-Arm"]
                decision = response.headers["X-Bandit-Decision"]
        except (TimeoutError, aiohttp.ClientError) as error:
            self._failed(phase, "invoke", type(error).__name__)
            return
        ledger.served[arm] += 1
        if self.feedback:
            await self._report(session, decision, arm, float(payload["outcome"]))

    async def _report(self, session: aiohttp.ClientSession, decision: str, arm: str, reward: float) -> None:
        """Post one reward; anything short of a 202 leaves it pending for the retrier."""
        ledger, phase = self.ledger, self.phase
        try:
            async with session.post("/feedback", json={"decision": decision, "reward": reward}) as answer:
                body = await answer.read()
                status = answer.status
                retry_after = answer.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError):
            # Sent or not, counted or not: only sending it again can tell.
            ledger.pending[decision] = (arm, reward)
            return
        if status == 202:
            ledger.acknowledged[decision] = (arm, reward)
        elif status == 503:
            self._saw_503(phase, retry_after)
            ledger.pending[decision] = (arm, reward)
        else:
            ledger.refused.append((decision, status, body[:200].decode(errors="replace")))
            self._failed(phase, "feedback", str(status))

    def _saw_503(self, phase: str, retry_after: str | None) -> None:
        """Count a 503 under the phase it was *sent* in: one sent once Redis is back is a defect."""
        self.ledger.feedback_503[phase] += 1
        if retry_after is None:
            self.ledger.feedback_503_without_retry_after += 1

    def _failed(self, phase: str, route: str, what: str) -> None:
        self.ledger.failed[phase] += 1
        self.ledger.failures[(phase, route, what)] += 1

    async def _retry_pending(self, session: aiohttp.ClientSession) -> None:
        """Send pending rewards again in batches, waiting as long as the service's Retry-After asks;
        returns once the clients have stopped and nothing is pending."""
        while not (self._stop.is_set() and not self.ledger.pending):
            wait = DEFAULT_RETRY_S
            batch = list(self.ledger.pending.items())[:RETRY_BATCH]
            if batch:
                wait = await self._retry(session, batch)
            await asyncio.sleep(wait if batch else 0.1)

    async def _retry(self, session: aiohttp.ClientSession, batch: list[tuple[str, tuple[str, float]]]) -> float:
        """One batched retry; returns how long to wait before the next one."""
        ledger, phase = self.ledger, self.phase
        items = [{"decision": decision, "reward": reward} for decision, (_, reward) in batch]
        try:
            async with session.post("/feedback", json={"items": items}) as answer:
                status = answer.status
                retry_after = answer.headers.get("Retry-After")
                result: dict[str, Any] = await answer.json() if status == 202 else {}
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return DEFAULT_RETRY_S
        if status == 503:
            self._saw_503(phase, retry_after)
            return float(retry_after) if retry_after else DEFAULT_RETRY_S
        if status != 202:
            return DEFAULT_RETRY_S
        refused = {error["index"]: error for error in result.get("errors", [])}
        for index, (decision, (arm, reward)) in enumerate(batch):
            del ledger.pending[decision]
            if index in refused:
                ledger.refused.append((decision, refused[index]["status"], refused[index]["reason"]))
            else:
                ledger.acknowledged[decision] = (arm, reward)
        return 0.0
