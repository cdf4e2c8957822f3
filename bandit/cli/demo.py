"""`mab demo`: a live bandit in one command.

Starts Redis if none answers, three simulated model versions with hidden reward
rates, the service, and clients that invoke and report outcomes; then prints the
experiment's stats every few seconds. The experiment comes from `demo.toml` beside this
module, an experiments file as `mab apply` reads them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from importlib.resources import files
from typing import Any

import httpx
import msgspec

from bandit.cli.local_redis import answers, free_port, start_redis
from bandit.cli.manifest import parse_manifest
from bandit.cli.plan import normalised
from bandit.client import ApiError, Client

EXPERIMENT = "demo"
#: The experiment, as an experiments file (package data, so an installed `mab demo` has it too).
MANIFEST = "demo.toml"
# Hidden reward rates: the bandit should find v3 without being told.
MODELS = {"v1-baseline": 0.04, "v2-distilled": 0.05, "v3-retrained": 0.07}
#: The shadow candidate of demo.toml (a copy of a quarter of the traffic, serving none).
SHADOW = {"v4-quantised": 0.06}


def demo_experiment(urls: dict[str, str]) -> dict[str, Any]:
    """demo.toml's experiment, each arm's url replaced by where its simulated server listens."""
    spec = parse_manifest(files("bandit.cli").joinpath(MANIFEST).read_bytes(), MANIFEST).experiments[EXPERIMENT]
    arms = [msgspec.structs.replace(arm, url=urls[arm.name]) for arm in spec.arms]
    return normalised(msgspec.structs.replace(spec, arms=arms))


def _spawn(stack: ExitStack, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    stack.callback(stop)
    return process


def _wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service at {url} did not become ready in {timeout_s:.0f} s")


def _print_stats(stats: dict[str, object], rate: float | None) -> None:
    arms = stats["arms"]
    assert isinstance(arms, list)
    header = f"{'arm':<14}{'decisions':>10}{'share now':>10}{'mean':>8}{'95% interval':>18}{'P(best)':>9}"
    print(f"\n{time.strftime('%H:%M:%S')}  leader: {stats['leader']}" + (f"   {rate:.0f} req/s" if rate else ""))
    print(header)
    for arm in arms:
        mean = f"{arm['mean']:.4f}" if arm["mean"] is not None else "-"
        interval = "[{:.3f}, {:.3f}]".format(*arm["interval"]) if arm["interval"] else "-"
        print(
            f"{arm['name']:<14}{arm['decisions']:>10}{arm['allocation']:>10.1%}{mean:>8}{interval:>18}"
            f"{arm['p_best']:>9.1%}"
        )


def run_demo(port: int = 8000, duration_s: float | None = None, rate_per_s: float = 300.0) -> int:
    token = os.environ.get("BANDIT_ADMIN_TOKEN") or secrets.token_urlsafe(16)
    # The simulated application posts rewards with a token of its own, as a deployment should.
    feedback_token = os.environ.get("BANDIT_FEEDBACK_TOKEN") or secrets.token_urlsafe(16)
    with ExitStack() as stack:
        redis_url = os.environ.get("BANDIT_REDIS_URL", "redis://127.0.0.1:6379/0")
        if "BANDIT_REDIS_URL" not in os.environ and not answers("127.0.0.1", 6379):
            process, redis_url = start_redis()
            stack.callback(process.terminate)
            print(f"no Redis on 127.0.0.1:6379: started redis-server at {redis_url}")
        if answers("127.0.0.1", port, 0.2) or _port_taken(port):
            port = free_port()
        versions = {**MODELS, **SHADOW}
        models = _spawn(stack, ["-m", "loadtest.model_server", *[f"--arm={n}:{r}" for n, r in versions.items()]])
        assert models.stdout is not None
        urls = json.loads(models.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        _spawn(
            stack,
            ["-m", "bandit", "serve", "--port", str(port), "--redis-url", redis_url, "--refresh-interval", "0.25"],
            env={"BANDIT_ADMIN_TOKEN": token, "BANDIT_FEEDBACK_TOKEN": feedback_token},
        )
        _wait_ready(base)
        admin = stack.enter_context(Client(base, token=token))
        try:  # one left by an earlier run starts afresh
            admin.delete_experiment(EXPERIMENT)
        except ApiError as error:
            if error.status != 404:
                raise
        admin.create_experiment(demo_experiment(urls))
        traffic = ["-m", "loadtest.traffic", "--url", base, "--experiment", EXPERIMENT, "--rate", str(rate_per_s)]
        traffic += ["--duration", str(duration_s)] if duration_s else ["--duration", str(10 * 365 * 86400)]
        _spawn(stack, traffic, env={"BANDIT_FEEDBACK_TOKEN": feedback_token})
        print(
            f"\nmab demo is running: three model versions with hidden reward rates {list(MODELS.values())},\n"
            f"and {', '.join(SHADOW)} in the shadow\n"
            f"  dashboard:  {base}/dashboard/{EXPERIMENT}   (controls want the admin token: {token})\n"
            f"  invoke:     curl -i -X POST {base}/invoke/{EXPERIMENT}/predict -d '{{}}'\n"
            f"  stats:      mab stats {EXPERIMENT} --url {base} --token {token}\n"
            f"  API schema: {base}/schema\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        started = time.monotonic()
        last = (started, 0)
        try:
            while duration_s is None or time.monotonic() - started < duration_s:
                time.sleep(min(5.0, max(0.5, (duration_s or 5.0) - (time.monotonic() - started))))
                stats = admin.stats(EXPERIMENT)
                now, decisions = time.monotonic(), stats["totals"]["decisions"]
                _print_stats(stats, (decisions - last[1]) / (now - last[0]))
                last = (now, decisions)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        total = admin.stats(EXPERIMENT)["totals"]["decisions"]
        elapsed = time.monotonic() - started
        print(f"\n{total} decisions in {elapsed:.0f} s ({total / elapsed:.0f} req/s including start-up).")
    return 0


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
