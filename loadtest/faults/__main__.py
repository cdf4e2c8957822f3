"""python -m loadtest.faults [--only redis,worker,races,upstreams] [--scale N] [--markdown FILE]

Runs the fault scenarios with a longer load than the tests (`--scale` times the tests'
defaults of each phase), each against real processes on loopback, and prints a table of
what each held, broke and lost. Redis is always one of our own: a durable one per
outage run (it gets killed), a throwaway one for the rest; the machine's Redis is never used.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from loadtest.faults.bad_upstreams import run_bad_upstreams
from loadtest.faults.feedback_races import run_feedback_races
from loadtest.faults.redis_outage import run_redis_outage
from loadtest.faults.report import Row, markdown, print_row
from loadtest.faults.rig import throwaway_redis
from loadtest.faults.worker_crash import run_worker_crash

SCENARIOS = ("redis", "worker", "races", "upstreams")


def _runners(redis_url: str, scale: float) -> dict[str, Callable[[], Row]]:
    """Each scenario at `scale` times the tests' phase lengths, with the command that reproduces it."""

    def command(name: str) -> str:
        return f"python -m loadtest.faults --only {name} --scale {scale:g}"

    return {
        "redis": lambda: run_redis_outage(
            warm_s=3 * scale, outage_s=3 * scale, after_s=3 * scale, command=command("redis")
        ).row(),
        "worker": lambda: run_worker_crash(
            redis_url, before_s=3 * scale, after_s=3 * scale, command=command("worker")
        ).row(),
        "races": lambda: run_feedback_races(redis_url, decisions=int(1500 * scale), command=command("races")).row(),
        "upstreams": lambda: run_bad_upstreams(
            redis_url,
            warm_s=2 * scale,
            excluded_s=4 * scale,
            healed_s=3 * scale,
            # The service's default probe interval: the tests probe faster to stay short.
            probe_interval_s=2.0,
            command=command("upstreams"),
        ).row(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--scale", type=float, default=4.0, help="phase lengths relative to the tests' (default 4)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    rows = []
    with throwaway_redis() as redis_url:
        runners = _runners(redis_url, args.scale)
        for name in wanted:
            row = runners[name]()
            print_row(row)
            rows.append(row)
    table = markdown(rows)
    print(
        f"\n{table}\n\nMachine: {os.cpu_count()} cores, shared by the load generator, the service, Redis "
        "and the model servers."
    )
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
