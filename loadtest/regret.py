"""Regret of our policies and of MABWiser's on the same reward draws, in process.

    python -m loadtest.regret --seeds 50 [--scenarios S1,S4] [--processes 2] [--horizon 20000]

One job is one (scenario, seed, contender): it draws the scenario's reward table from
the seed, plays the whole horizon and returns its pseudo-regret and the wall time per
step of its decide-and-observe loop. Jobs run on a process pool. The output is a
plain table per scenario, then the same tables in markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Literal

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from loadtest.regret_scenarios import (
    DEFAULT_HORIZON,
    SCENARIOS,
    FloatArray,
    IndexArray,
    Scenario,
    feedback_rounds,
)
from policies import (
    UCB1,
    EpsilonGreedy,
    GradientBandit,
    GradientStep,
    PageHinkley,
    Policy,
    Softmax,
    StatisticsTracker,
    ThompsonSampling,
    TopTwoThompson,
)

Library = Literal["ours", "mabwiser"]
#: Added to a contender's index in its table when seeding its decisions, so the libraries' streams never overlap.
SEED_OFFSET: dict[Library, int] = {"ours": 0, "mabwiser": 1000}


@dataclass(frozen=True, slots=True)
class Contender:
    """One of our policies as the benchmark runs it."""

    label: str
    policy: Callable[[Scenario], Policy]
    # Keyword arguments of the statistics tracker, e.g. {"discount": 0.99}.
    tracker: Mapping[str, Any] = field(default_factory=dict)
    # Reference figures by scenario (T = 20,000, mean of 50 seeds), printed beside the measured ones.
    anchors: Mapping[str, str] = field(default_factory=dict)


def _thompson(scenario: Scenario) -> Policy:
    # The service's choice: Beta for 0/1 rewards, Gaussian once a latency penalty makes them real-valued.
    return ThompsonSampling(model=scenario.posterior_model)


_STATIONARY_TS_S4 = {"S4": "≈400-440 (stationary TS)"}
_DISCOUNTED_TS_S4 = {"S4": "≈175 (discounted TS)"}

# ─── Our contenders: one row each; extend the table with new policies or settings. ───
# A row is (label, policy factory of the scenario, StatisticsTracker keyword arguments).
# Keep the order stable: a contender's index seeds its decisions.
OURS: tuple[Contender, ...] = (
    Contender("TS", _thompson, anchors=_STATIONARY_TS_S4),
    Contender("TS discount 0.99", _thompson, {"discount": 0.99}, anchors=_DISCOUNTED_TS_S4),
    Contender("TS discount 0.999", _thompson, {"discount": 0.999}, anchors=_DISCOUNTED_TS_S4),
    Contender("TS + Page-Hinkley", _thompson, {"change_detection": PageHinkley()}),
    Contender("Top-two TS beta 0.5", lambda s: TopTwoThompson(beta=0.5, model=s.posterior_model)),
    Contender("UCB1 c=2", lambda s: UCB1(c=2.0)),
    # The service drops the [0, 1] cap of UCB1-Tuned once a latency penalty unbounds the rewards.
    Contender("UCB1-Tuned", lambda s: UCB1(variance_aware=True, bounded=s.binary)),
    Contender("ε-greedy 0.1", lambda s: EpsilonGreedy(epsilon=0.1)),
    Contender("Softmax T=0.1", lambda s: Softmax(temperature=0.1)),
    Contender("Gradient step 0.1", lambda s: GradientBandit(), {"gradient": GradientStep(step_size=0.1)}),
)


def _correct(arm: int, reward: float) -> bool:
    # S5's rewards are 1{correct} minus a small latency cost: positive exactly when the prediction was right.
    return reward > 0


def _mabwiser_thompson(scenario: Scenario) -> Any:
    # MABWiser's Thompson sampling is Beta-Bernoulli only; on real-valued rewards it learns 1{correct}.
    return LearningPolicy.ThompsonSampling() if scenario.binary else LearningPolicy.ThompsonSampling(binarizer=_correct)


@dataclass(frozen=True, slots=True)
class LibraryContender:
    """One of MABWiser's learning policies."""

    label: str
    learning_policy: Callable[[Scenario], Any]
    anchors: Mapping[str, str] = field(default_factory=dict)


MABWISER_TS = "MABWiser TS"
MABWISER: tuple[LibraryContender, ...] = (
    LibraryContender(MABWISER_TS, _mabwiser_thompson, {"S1": "34.4", **_STATIONARY_TS_S4}),
    LibraryContender("MABWiser UCB1 alpha=1", lambda s: LearningPolicy.UCB1(alpha=1), {"S1": "219.5"}),
    LibraryContender("MABWiser ε-greedy 0.1", lambda s: LearningPolicy.EpsilonGreedy(epsilon=0.1), {"S1": "70.9"}),
)


def decision_seed(seed: int, library: Library, index: int) -> np.random.SeedSequence:
    """The seed of one contender's own decisions, apart from the reward stream (which is default_rng(seed))."""
    return np.random.SeedSequence([seed, SEED_OFFSET[library] + index])


def play_ours(contender: Contender, scenario: Scenario, rewards: FloatArray, rng: np.random.Generator) -> IndexArray:
    """Run one of our policies over the reward table (T, K); the arm chosen at each step, shape (T,)."""
    horizon, arms = rewards.shape
    policy = contender.policy(scenario)
    tracker = StatisticsTracker(arms, **contender.tracker)
    # Python lists: indexing them per step is cheaper than numpy's scalar access.
    table = rewards.tolist()
    chosen = np.empty(horizon, dtype=np.intp)
    for lo, hi in feedback_rounds(horizon, scenario.batch):
        block = policy.choose(tracker.statistics, rng, hi - lo)
        chosen[lo:hi] = block
        for t, arm in enumerate(block.tolist(), start=lo):
            tracker.observe(arm, table[t][arm])
    return chosen


def play_mabwiser(contender: LibraryContender, scenario: Scenario, rewards: FloatArray, seed: int) -> IndexArray:
    """Run one MABWiser policy over the reward table (T, K), predict then partial_fit; shape (T,)."""
    horizon, arms = rewards.shape
    table = rewards.tolist()
    mab = MAB(list(range(arms)), contender.learning_policy(scenario), seed=seed)
    # MABWiser predicts only after a fit, and its UCB1 never picks an arm with no count:
    # every MABWiser policy starts with one round-robin pass (K steps, counted in its regret).
    chosen = list(range(arms))
    mab.fit(chosen, [table[k][k] for k in range(arms)])
    for lo, hi in feedback_rounds(horizon, scenario.batch, start=arms):
        block = [mab.predict() for _ in range(lo, hi)]
        mab.partial_fit(block, [table[t][arm] for t, arm in enumerate(block, start=lo)])
        chosen.extend(block)
    return np.asarray(chosen, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class Job:
    scenario: str
    library: Library
    index: int
    seed: int
    horizon: int


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    regret: float
    seconds_per_step: float


def run_job(job: Job) -> Outcome:
    """Play one contender over one seed's reward table; its pseudo-regret and loop time per step."""
    scenario = SCENARIOS[job.scenario]
    rewards = scenario.reward_table(job.seed, job.horizon)
    started = time.perf_counter()
    if job.library == "ours":
        rng = np.random.default_rng(decision_seed(job.seed, "ours", job.index))
        chosen = play_ours(OURS[job.index], scenario, rewards, rng)
    else:
        seed = int(decision_seed(job.seed, "mabwiser", job.index).generate_state(1)[0])
        chosen = play_mabwiser(MABWISER[job.index], scenario, rewards, seed)
    elapsed = time.perf_counter() - started
    return Outcome(job, scenario.pseudo_regret(chosen), elapsed / job.horizon)


def plan_jobs(
    scenarios: Iterable[str], seeds: int, horizon: int, with_mabwiser: bool, only: set[str] | None = None
) -> list[Job]:
    """Every (scenario, seed, contender), MABWiser's first: its jobs are the longest, so the pool ends evenly."""
    jobs = []
    for name in scenarios:
        for seed in range(seeds):
            if with_mabwiser:
                jobs += [Job(name, "mabwiser", i, seed, horizon) for i in range(len(MABWISER))]
            jobs += [
                Job(name, "ours", i, seed, horizon)
                for i, contender in enumerate(OURS)
                if only is None or contender.label in only
            ]
    library_order: dict[Library, int] = {"mabwiser": 0, "ours": 1}
    return sorted(jobs, key=lambda job: library_order[job.library])


def run_jobs(jobs: list[Job], processes: int) -> list[Outcome]:
    """Run the jobs on `processes` worker processes (in this process when 1)."""
    report = _progress(len(jobs)) if sys.stderr.isatty() else None
    if processes <= 1:
        outcomes = []
        for job in jobs:
            outcomes.append(run_job(job))
            if report:
                report(len(outcomes))
        return outcomes
    with multiprocessing.Pool(processes) as pool:
        outcomes = []
        for outcome in pool.imap_unordered(run_job, jobs, chunksize=1):
            outcomes.append(outcome)
            if report:
                report(len(outcomes))
    return outcomes


def _progress(total: int) -> Callable[[int], None]:
    step = max(1, total // 20)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"  {done}/{total} jobs", file=sys.stderr, flush=True)

    return report


@dataclass(frozen=True, slots=True)
class Row:
    """One contender's result in one scenario, over all seeds."""

    label: str
    regrets: FloatArray
    us_per_step: float
    anchor: str
    is_baseline: bool

    @property
    def mean(self) -> float:
        return float(self.regrets.mean())

    @property
    def standard_error(self) -> float:
        n = self.regrets.shape[0]
        return float(self.regrets.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def collect_rows(outcomes: list[Outcome]) -> dict[str, list[Row]]:
    """Rows per scenario: our contenders in table order, then MABWiser's."""
    grouped: dict[tuple[str, Library, int], list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        job = outcome.job
        grouped[(job.scenario, job.library, job.index)].append(outcome)
    library_order: dict[Library, int] = {"ours": 0, "mabwiser": 1}
    rows: dict[str, list[Row]] = defaultdict(list)
    for scenario, library, index in sorted(grouped, key=lambda key: (key[0], library_order[key[1]], key[2])):
        runs = sorted(grouped[(scenario, library, index)], key=lambda outcome: outcome.job.seed)
        contender: Contender | LibraryContender = OURS[index] if library == "ours" else MABWISER[index]
        rows[scenario].append(
            Row(
                label=contender.label,
                regrets=np.array([run.regret for run in runs]),
                us_per_step=1e6 * float(np.mean([run.seconds_per_step for run in runs])),
                anchor=contender.anchors.get(scenario, ""),
                is_baseline=contender.label == MABWISER_TS,
            )
        )
    return rows


def _ratio_base(scenario: str, rows: list[Row]) -> tuple[float | None, str]:
    """What the ratios divide by: MABWiser TS on the same draws, else its reference figure, else nothing."""
    measured = next((row.mean for row in rows if row.is_baseline), None)
    if measured is not None:
        return measured, "÷ MABWiser TS"
    anchor = next(c.anchors.get(scenario, "") for c in MABWISER if c.label == MABWISER_TS)
    try:
        return float(anchor), "÷ MABWiser TS anchor"
    except ValueError:
        return None, "÷ MABWiser TS"


def _cells(row: Row, base: float | None) -> tuple[str, str, str, str]:
    """Regret ± s.e., ratio, µs/step and anchor of one row, as text."""
    error = "-" if np.isnan(row.standard_error) else f"{row.standard_error:.1f}"
    ratio = f"{row.mean / base:.2f}" if base else "-"
    return f"{row.mean:.1f} ± {error}", ratio, f"{row.us_per_step:.0f}", row.anchor


SCENARIO_NOTES = {
    "S5": "MABWiser TS is Beta-Bernoulli only: here it learns 1{correct} (binarizer r > 0), optimising accuracy "
    "and ignoring latency; our TS uses its Gaussian model on the raw rewards.",
    "S6": "MABWiser's round-robin first pass (K steps) is fitted before the rest of the first batch.",
}


def scenario_title(scenario: Scenario, horizon: int) -> str:
    feedback = "feedback after every decision" if scenario.batch == 1 else f"feedback in batches of {scenario.batch}"
    return f"{scenario.name}: {scenario.description}  [{feedback}, T = {horizon:,}]"


def format_plain(rows: dict[str, list[Row]], horizon: int) -> str:
    """One aligned table per scenario."""
    lines = []
    for name, scenario_rows in rows.items():
        base, ratio_header = _ratio_base(name, scenario_rows)
        lines += ["", scenario_title(SCENARIOS[name], horizon)]
        lines.append(f"  {'contender':<24}{'regret ± s.e.':>18}{ratio_header:>24}{'µs/step':>10}   reference")
        for row in scenario_rows:
            regret, ratio, micros, anchor = _cells(row, base)
            lines.append(f"  {row.label:<24}{regret:>18}{ratio:>24}{micros:>10}   {anchor}")
        if name in SCENARIO_NOTES:
            lines.append(f"  note: {SCENARIO_NOTES[name]}")
    return "\n".join(lines)


def format_markdown(rows: dict[str, list[Row]], horizon: int, seeds: int) -> str:
    """The same tables in markdown, for BENCHMARKS.md."""
    lines = [f"Pseudo-regret after {horizon:,} steps, mean ± s.e. over {seeds} seeds (2-core machine; in-process)."]
    for name, scenario_rows in rows.items():
        base, ratio_header = _ratio_base(name, scenario_rows)
        lines += ["", f"**{scenario_title(SCENARIOS[name], horizon)}**", ""]
        lines.append(f"| contender | regret | {ratio_header} | µs/step | reference |")
        lines.append("|---|---:|---:|---:|---:|")
        for row in scenario_rows:
            lines.append("| " + " | ".join((row.label, *_cells(row, base))) + " |")
        if name in SCENARIO_NOTES:
            lines += ["", f"_{SCENARIO_NOTES[name]}_"]
    return "\n".join(lines)


def header(seeds: int, horizon: int, processes: int) -> str:
    versions = f"python {platform.python_version()}, numpy {np.__version__}, mabwiser {version('mabwiser')}"
    return (
        f"Regret benchmark — 2-core machine; in-process. T = {horizon:,}, {seeds} seeds, {processes} processes; "
        f"{versions}.\n"
        "Same reward draws per (scenario, seed) for every contender; pseudo-regret Σ_t (μ*_t - μ_chosen,t).\n"
        "µs/step: wall time of one worker's decide+observe loop per step, workers sharing the cores.\n"
        "Reference figures are means over 50 seeds at T = 20,000, for orientation."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, e.g. S1,S4")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=DEFAULT_HORIZON)
    parser.add_argument("--skip-mabwiser", action="store_true", help="only our contenders (ratios use the anchors)")
    parser.add_argument("--only", help="comma-separated labels of our contenders to run (default: all)")
    args = parser.parse_args(argv)
    names = [name.strip().upper() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    print(header(args.seeds, args.horizon, args.processes), flush=True)
    started = time.monotonic()
    only = set(args.only.split(",")) if args.only else None
    jobs = plan_jobs(names, args.seeds, args.horizon, with_mabwiser=not args.skip_mabwiser, only=only)
    rows = collect_rows(run_jobs(jobs, args.processes))
    ordered = {name: rows[name] for name in names}
    print(format_plain(ordered, args.horizon))
    print(f"\n{len(jobs)} jobs in {time.monotonic() - started:.0f} s wall time.\n\nMarkdown:\n")
    print(format_markdown(ordered, args.horizon, args.seeds))


if __name__ == "__main__":
    main()
