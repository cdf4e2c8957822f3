"""What a `/metrics` scrape costs to render, at 10, 100 and 1,000 experiments (issue 14).

    python -m loadtest.metrics_cost [--experiments 10,100,1000] [--arms 3] [--workers 2]

Writes, for each count, the counters `mab serve`'s workers would hold after serving and rewarding
every arm once (a decision, a duration, a feedback outcome and a reward sum per arm; no errors
or shadow copies), each worker in its own multiprocess file as under `mab serve`, then times the
rendering `GET /metrics` does (`generate_latest` over prometheus-client's multiprocess collector:
read every worker's files, merge, format), best of 3, in CPU seconds of this process. The gauges
of the shared state are left out: they are a few per arm and computed from stats the service
keeps anyway. One process on a machine whose 2 cores are shared with whatever else runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile


def _fill(directory: str, experiments: int, arms: int) -> None:
    """In a child process (its own pid, so its own files): one worker's counts."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from bandit.telemetry.metrics import ServedTally, ServiceMetrics

    metrics = ServiceMetrics()
    tally = ServedTally(metrics)
    for experiment in range(experiments):
        name = f"experiment-{experiment:04d}"
        for arm in range(arms):
            tally.count(name, f"v{arm}", 0.004 * (arm + 1), None)
            metrics.rewarded(name, f"v{arm}", 1.0)
        metrics.feedback(name, "accepted", arms)
    tally.publish()


def _render_cost(directory: str) -> tuple[float, int, int]:
    """(best CPU seconds of 3 renders, series, bytes), in a child that reads `directory`."""
    code = (
        "import os, sys, time\n"
        f"os.environ['PROMETHEUS_MULTIPROC_DIR'] = {directory!r}\n"
        "from prometheus_client import generate_latest\n"
        "from bandit.telemetry.metrics import ServiceMetrics\n"
        "registry = ServiceMetrics().registry\n"
        "best = float('inf')\n"
        "for _ in range(3):\n"
        "    started = time.process_time(); text = generate_latest(registry)\n"
        "    best = min(best, time.process_time() - started)\n"
        "series = sum(1 for line in text.decode().splitlines() if line and not line.startswith('#'))\n"
        "print(best, series, len(text))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", default="10,100,1000")
    parser.add_argument("--arms", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"python -m loadtest.metrics_cost --experiments {args.experiments} --arms {args.arms} --workers {args.workers}"
    )
    print("(2 cores shared with whatever else runs on this machine)\n")
    print("| experiments | series | text | render, CPU (best of 3) | per series |")
    print("|---:|---:|---:|---:|---:|")
    for count in (int(part) for part in args.experiments.split(",")):
        with tempfile.TemporaryDirectory(prefix="mab-metrics-cost-") as directory:
            for _ in range(args.workers):
                fill = f"from loadtest.metrics_cost import _fill; _fill({directory!r}, {count}, {args.arms})"
                subprocess.run([sys.executable, "-c", fill], check=True)
            seconds, series, size = _render_cost(directory)
            per_series = seconds / series * 1e6
            print(f"| {count:,} | {series:,} | {size / 1e6:.2f} MB | {seconds * 1000:,.0f} ms | {per_series:.1f} µs |")


if __name__ == "__main__":
    main()
