"""Where a proxied request's CPU goes: py-spy samples the service under wrk load (issue 13).

    python -m loadtest.proxy_profile --duration 10 [--policy thompson] [--server granian]

Starts the simulated models and one `mab serve` worker (as `loadtest.proxy_bench` does), loads
it with `wrk -t1 -c64`, and samples it with py-spy (idle threads excluded; ``--native`` adds C
and Rust frames, whose own time py-spy cannot always tell from waiting). Prints the top
functions by own time (the innermost frame of each sample) and by total time.
py-spy is installed into the venv when missing. wrk, the service, the models and Redis share
the machine's cores; the shares are of the service's sampled (busy) time.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.proxy_bench import (
    BODY,
    EXPERIMENT,
    THOMPSON_ARMS,
    WRK_FEEDBACK_SCRIPT,
    WRK_SCRIPT,
    Target,
    ensure_tools,
    model_servers,
    service,
    wrk_command,
)

# Innermost frames of threads that wait for work (py-spy cannot always tell them from busy ones).
IDLE_FRAMES = frozenset({"Condition.wait", "_worker", "Queue.get", "wait", "select", "epoll_wait"})


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
        found = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("py-spy could not be installed")
    return found


def frame_name(frame: str) -> str:
    """`send (proxy/app.py:123)` → `send (proxy/app.py)`: functions, not lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].split('site-packages/')[-1]})" if where else name


def summarise(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        # The process and thread come first; a thread with no Python frame (a Rust or C runtime
        # thread, granian's or the upstream client's) has nothing after them and is left out.
        frames = [frame_name(frame) for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        # Idle threads (thread pools waiting for work) still show up in py-spy's samples.
        if not frames or frames[-1].split(" (")[0] in IDLE_FRAMES:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    print(f"\n{samples} busy samples; top {top} by own time")
    for name, count in own.most_common(top):
        print(f"  {count / samples:6.1%}  {name}")
    print(f"\ntop {top} by total time (inclusive)")
    for name, count in total.most_common(top):
        print(f"  {count / samples:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--policy", choices=["static", "thompson"], default="static")
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--client", default="pyreqwest")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--native", action="store_true", help="C and Rust frames too (py-spy --native)")
    parser.add_argument("--keep", type=Path, help="also write py-spy's raw samples (collapsed stacks) here")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    tools = ensure_tools(["wrk"])
    spy = py_spy()
    target = Target("profile", "service", 1, args.policy, args.server, args.client)
    with tempfile.TemporaryDirectory(prefix="mab-profile-") as temp, model_servers() as (urls, _):
        workdir = Path(temp)
        script = workdir / "load.lua"
        feedback_script = WRK_FEEDBACK_SCRIPT.format(body=BODY, share=0.2)
        script.write_text(feedback_script if target.learning else WRK_SCRIPT)
        with service(target, urls, args.redis_url, workdir / "service.log") as (base, pid):
            url = f"{base}/invoke/{EXPERIMENT}/predict"
            # Warm up, then sample for the duration while wrk runs a little longer.
            subprocess.run(wrk_command(tools["wrk"], script, url, 64, 2), capture_output=True, check=True)
            load = subprocess.Popen(
                wrk_command(tools["wrk"], script, url, 64, args.duration + 2), stdout=subprocess.DEVNULL
            )
            raw = workdir / "profile.txt"
            record = [
                spy,
                "record",
                *(["--native"] if args.native else []),
                "--subprocesses",
                "-r",
                "200",
                "-d",
                f"{args.duration:g}",
            ]
            record += ["-f", "raw", "-o", str(raw), "--pid", str(pid)]
            subprocess.run(record, check=True, capture_output=True)
            load.wait()
            if args.keep:
                shutil.copy(raw, args.keep)
        print(f"service: {target.label} ({', '.join(THOMPSON_ARMS) if target.learning else 'a'}); 2 cores shared")
        summarise(raw, args.top)


if __name__ == "__main__":
    main()
