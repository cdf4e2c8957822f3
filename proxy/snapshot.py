"""An experiment's routing state as one process sees it: chosen from without any I/O."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.models import ArmSpec, Experiment
from bandit.core.policy_adapter import allocation, build_policy, policy_statistics, serving_arms
from policies import ArmStatistics, Policy
from proxy.clients.base import Origin, Timeouts
from proxy.health import HealthKey

#: Posterior values drawn per vectorised batch of choices (choices × serving arms): big
#: enough that a decision costs about a microsecond, small enough that drawing a batch
#: never holds the event loop for more than a millisecond or two, even at 100+ arms.
DRAWS_PER_BATCH = 16_384
MAX_CHOICE_BATCH = 256
#: Draws from the policy before giving up on finding a healthy arm that way.
MAX_REDRAWS = 16
#: How long an estimated allocation is reused by the snapshots that replace each other as
#: rewards arrive (every 50 ms or so): Thompson's estimate costs thousands of posterior
#: draws, which at 100+ arms would otherwise be paid on the event loop after every rebuild.
ALLOCATION_MAX_AGE_S = 1.0
#: ...and only while the observations behind it grew by at most this share (plus a few): the
#: allocation moves fastest while a policy has seen little, and a stale one would misstate the
#: propensities (X-Bandit-Propensity, the sample-ratio check). Re-estimated about 50 · ln(N)
#: times over N observations: all the time early on, hardly ever later.
ALLOCATION_MAX_GROWTH = 0.02
ALLOCATION_GROWTH_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class ArmRoute:
    """What forwarding to one arm needs, worked out once per config rather than per request."""

    name: str
    # The arm's name as the X-Bandit-Arm header value.
    header_value: bytes
    url: str
    origin: Origin
    timeouts: Timeouts
    shadow: bool
    mirror_percent: float

    @classmethod
    def of(cls, arm: ArmSpec, defaults: Timeouts) -> ArmRoute:
        timeouts = defaults
        if arm.connect_timeout_s is not None or arm.read_timeout_s is not None:
            timeouts = Timeouts(arm.connect_timeout_s or defaults.connect_s, arm.read_timeout_s or defaults.read_s)
        return cls(
            arm.name, arm.name.encode(), arm.url, Origin.from_url(arm.url), timeouts, arm.shadow, arm.mirror_percent
        )


def arm_routes(experiment: Experiment, defaults: Timeouts) -> tuple[ArmRoute, ...]:
    """One route per arm, in the order of `experiment.arms`."""
    return tuple(ArmRoute.of(arm, defaults) for arm in experiment.arms)


@dataclass(slots=True)
class Snapshot:
    """Experiment config, statistics and a queue of pre-drawn arm choices."""

    experiment: Experiment
    # What the policy sees of each arm (all arms, experiment.arms order).
    statistics: ArmStatistics
    rng: np.random.Generator
    # The upstream timeouts of arms that set none of their own.
    timeouts: Timeouts
    # One per arm (experiment.arms order); given when a snapshot of the same arms already has them.
    routes: tuple[ArmRoute, ...] = ()
    # The shadow arms a served request is copied to (none unless the experiment is running).
    shadows: tuple[ArmRoute, ...] = field(init=False)
    # Each route's (experiment, upstream URL): what health and the per-arm caps are kept by.
    health_keys: tuple[HealthKey, ...] = field(init=False)
    # The X-Bandit-Experiment header value.
    header_value: bytes = field(init=False)
    serving: list[int] = field(init=False)
    policy: Policy | None = field(init=False)
    # The raw config and counters hash it was built from, to skip rebuilding when neither changed.
    source: tuple[bytes, dict[bytes, bytes]] | None = field(init=False, default=None)
    _serving_statistics: ArmStatistics = field(init=False)
    _batch: int = field(init=False)
    _queued: list[int] = field(init=False, default_factory=list)
    _cumulative: np.ndarray | None = field(init=False, default=None)
    _allocated_at: float = field(init=False, default=0.0)
    # The observations (summed pulls) the estimate in `_cumulative` was made from.
    _allocated_pulls: float = field(init=False, default=0.0)
    # Propensity and its X-Bandit-Propensity value by arm name, worked out on the first answer
    # this snapshot routes.
    _propensities: dict[str, tuple[float, bytes]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not self.routes:
            self.routes = arm_routes(self.experiment, self.timeouts)
        running = self.experiment.status == "running"
        self.shadows = tuple(route for route in self.routes if route.shadow and running)
        self.health_keys = tuple((self.experiment.name, route.url) for route in self.routes)
        self.header_value = self.experiment.name.encode()
        self.serving = serving_arms(self.experiment)
        pinned = self.experiment.pinned_arm() is not None
        self.policy = None if pinned else build_policy(self.experiment, self.serving)
        self._serving_statistics = self.statistics.subset(np.asarray(self.serving))
        self._batch = max(1, min(MAX_CHOICE_BATCH, DRAWS_PER_BATCH // len(self.serving)))

    @classmethod
    def build(
        cls,
        experiment: Experiment,
        counters: ArmCounters,
        rng: np.random.Generator,
        timeouts: Timeouts,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        # Rewards rebuild the snapshot every few tens of milliseconds; the arms rarely change with them.
        reuse = previous is not None and previous.timeouts == timeouts and previous.experiment.arms == experiment.arms
        routes = previous.routes if previous is not None and reuse else ()
        snapshot = cls(experiment, policy_statistics(experiment, counters), rng, timeouts, routes)
        if (
            previous is not None
            and previous._cumulative is not None
            and previous.experiment.version == experiment.version
            and previous.experiment.incarnation == experiment.incarnation
            and time.monotonic() - previous._allocated_at < ALLOCATION_MAX_AGE_S
            and float(snapshot.statistics.pulls.sum())
            <= previous._allocated_pulls * (1 + ALLOCATION_MAX_GROWTH) + ALLOCATION_GROWTH_SLACK
        ):
            # Same config, statistics a few rewards on: the recent estimate still holds.
            snapshot._cumulative = previous._cumulative
            snapshot._allocated_at = previous._allocated_at
            snapshot._allocated_pulls = previous._allocated_pulls
        return snapshot

    @property
    def name(self) -> str:
        return self.experiment.name

    def choose(self) -> int:
        """Index (into experiment.arms) of the arm for the next request."""
        if self.policy is None:
            return self.serving[0]
        if not self._queued:
            drawn = self.policy.choose(self._serving_statistics, self.rng, self._batch)
            self._queued = [self.serving[i] for i in drawn.tolist()]
        return self._queued.pop()

    @property
    def allocation(self) -> np.ndarray:
        """Share of the next decisions per arm (shadow arms 0); shape (K,).

        Computed on first use only: Thompson's estimate takes thousands of posterior
        draws, which the plain decision path never needs.
        """
        return np.diff(self._cumulative_allocation(), prepend=0.0)

    def estimated_allocation(self) -> np.ndarray | None:
        """`allocation` if it is estimated already, else None: the recorder then estimates it off
        the event loop (`fresh_allocation`) rather than on it."""
        return None if self._cumulative is None else self.allocation

    def fresh_allocation(self) -> np.ndarray:
        """An estimate of the allocation from this snapshot's statistics, leaving the one it routes
        sticky units by untouched; safe to call from a worker thread."""
        return allocation(self.experiment, self.statistics, np.random.default_rng(), self.policy)

    def propensity(self, route: ArmRoute) -> tuple[float, bytes]:
        """The propensity of an answer from `route`, and as the X-Bandit-Propensity value: the share
        of requests the policy gave that arm when this snapshot routed it (`allocation`, for
        Thompson sampling its estimate; 1 for an arm that takes all traffic). On a retry it is
        the share of the arm that answered, not the probability of the path there."""
        if self._propensities is None:
            shares = self.allocation.tolist()
            self._propensities = {
                arm.name: (share, f"{share:.6g}".encode())
                for arm, share in zip(self.experiment.arms, shares, strict=True)
            }
        return self._propensities[route.name]

    def _cumulative_allocation(self) -> np.ndarray:
        if self._cumulative is None:
            self._cumulative = np.cumsum(allocation(self.experiment, self.statistics, self.rng, self.policy))
            self._allocated_at = time.monotonic()
            self._allocated_pulls = float(self.statistics.pulls.sum())
        return self._cumulative

    def choose_healthy(self, is_healthy: Callable[[HealthKey], bool]) -> int:
        """Like `choose`, skipping arms whose upstream is not healthy (for this experiment).

        Redrawing from the policy until a healthy arm comes up hands an ejected arm's
        share to the others in proportion to theirs. With every serving arm unhealthy,
        the policy's own choice stands: trying is better than refusing.
        """
        keys = self.health_keys
        index = self.choose()
        for _ in range(MAX_REDRAWS):
            if is_healthy(keys[index]):
                return index
            index = self.choose()
        if is_healthy(keys[index]):
            return index
        other = self.choose_other(index, is_healthy)
        return index if other is None else other

    def choose_other(self, index: int, is_healthy: Callable[[HealthKey], bool]) -> int | None:
        """A healthy serving arm other than `index`, by the allocation; None if there is none."""
        others = [i for i in self.serving if i != index and is_healthy(self.health_keys[i])]
        if not others:
            return None
        weights = self.allocation[others]
        if weights.sum() <= 0:
            return int(self.rng.choice(others))
        return int(self.rng.choice(others, p=weights / weights.sum()))

    def serving_index(self, arm_name: str) -> int | None:
        """Index of `arm_name` if it may take traffic now."""
        return next((i for i in self.serving if self.experiment.arms[i].name == arm_name), None)

    def unit_digest(self, unit: bytes) -> bytes:
        """8 bytes naming a sticky unit (`X-Bandit-Unit`) of this experiment, whatever its length.

        Spelled as earlier releases hashed it (the name, a NUL, the unit's bytes read as latin-1,
        all UTF-8 encoded), so replicas of both agree on every unit's arm.
        """
        text = f"{self.name}\0{unit.decode('latin-1')}"
        return hashlib.blake2b(text.encode(), digest_size=8).digest()

    def choose_for_unit(self, digest: bytes) -> int:
        """Sticky choice: a unit's digest hashes onto the allocation, so it maps to the same arm on
        every replica, and only units near a boundary move when the allocation shifts."""
        cumulative = self._cumulative_allocation()
        position = int.from_bytes(digest, "big") / 2**64 * cumulative[-1]
        index = int(np.searchsorted(cumulative, position, side="right"))
        return min(index, len(cumulative) - 1)
