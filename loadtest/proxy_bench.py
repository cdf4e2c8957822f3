"""Proxy cost beside nginx (issues 4 and 13): one run, same machine, wrk on loopback.

    python -m loadtest.proxy_bench --duration 10

Every target answers the same request, ``POST …/predict`` with a small JSON body, served in
the end by one simulated model server (``loadtest.model_server``):

- ``direct``: wrk straight to the model server;
- ``nginx1``, ``nginx2``: nginx as a plain reverse proxy with upstream keepalive, its own config
  in a temp dir, 1 or 2 worker processes;
- ``service1``, ``service2``: ``python -m bandit serve`` with 1 or 2 workers, one experiment of
  one arm with the ``static`` policy: the raw cost of the proxy;
- ``floor-uvicorn``, ``floor-granian``: ``loadtest.floor_proxy``, the least a Python proxy on
  the same server (ASGI under uvicorn, RSGI under granian) and upstream client costs; also
  ``floor-uvicorn-h11``, ``floor-granian-asgi`` and ``floor-hypercorn`` (pip-installed when
  missing), the other server candidates;
- ``service1-thompson``, ``service2-thompson``: three arms under Thompson sampling, with
  feedback posted for a share of the decisions (``--feedback-share``) by the same wrk
  connections, as a client reporting its outcomes would;
- any service target with ``-nometrics`` (``service1-nometrics``): the same with
  ``BANDIT_METRICS=false``, so what the Prometheus counters cost per request is the difference
  (issue 14: at most 5 %).

``--servers`` and ``--clients`` run each service target under every server layer
(``BANDIT_SERVER``) and upstream client (``BANDIT_UPSTREAM_CLIENT``) named.

Targets run in turn. For each: a warm-up, then ``wrk -t1 -c64`` (req/s, p50, p99, and the CPU
time of every process and thread of the target, read from /proc across the timed run), then
``wrk -t1 -c1`` (p50 at one connection). CPU per request is the figure that travels between
machines; req/s and latency move with whatever else shares the cores. wrk, the proxy, the model
server and Redis share the machine's cores, so compare ratios within a run. Redis's own CPU per
request is shown beside the service's. Installs ``wrk`` and ``nginx`` with apt-get when missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import redis

from bandit.cli.local_redis import free_port
from loadtest.processes import model_urls, spawn, stop, tree_cpu_seconds, wait_http

EXPERIMENT = "proxy-bench"
BODY = '{"features": [0.12, 0.5, 0.93, 0.07]}'
MARKER = "PROXY_BENCH_RESULT"
# The three arms of the learning runs (hidden reward rates of the simulated models).
THOMPSON_ARMS = {"a": 0.04, "b": 0.05, "c": 0.07}
# Issue 13's targets for the service, stated beside the figures (against nginx with 1 worker).
TARGET_CPU_RATIO = 4.0
GOAL_CPU_RATIO = 2.0
TARGET_RPS_RATIO = 0.4
TARGET_ADDED_P50_MS = 0.25

# wrk's Lua: a machine-readable summary (percentiles in µs) so nothing parses wrk's human
# output, whose units change between µs, ms and s.
WRK_DONE = f"""
done = function(summary, latency, requests)
  local e = summary.errors
  local feedbacks = 0
  for _, thread in ipairs(threads) do feedbacks = feedbacks + (thread:get("feedbacks") or 0) end
  io.write(string.format(
    '{MARKER} {{"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "feedbacks": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, feedbacks))
end
"""
WRK_SCRIPT = f"""\
threads = {{}}
setup = function(thread) table.insert(threads, thread) end
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
{WRK_DONE}"""

# The learning runs: after every response, with probability `share`, the next request on that
# connection posts the decision's reward (the model's `outcome`) to /feedback. Only this script
# defines `response`, which makes wrk parse every answer: the plain targets don't pay for it.
WRK_FEEDBACK_SCRIPT = """\
threads = {{}}
setup = function(thread) table.insert(threads, thread) end
feedbacks = 0
local pending = {{}}
local invoke = wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, '{body}')
init = function(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
request = function()
  local item = table.remove(pending)
  if item then
    feedbacks = feedbacks + 1
    return wrk.format("POST", "/feedback", {{["Content-Type"] = "application/json"}}, item)
  end
  return invoke
end
response = function(status, headers, body)
  local decision = headers["x-bandit-decision"] or headers["X-Bandit-Decision"]
  if decision and math.random() < {share} then
    local reward = string.find(body, '"outcome": 1', 1, true) and 1 or 0
    table.insert(pending, '{{"decision": "' .. decision .. '", "reward": ' .. reward .. '}}')
  end
end
""" + WRK_DONE.replace("{", "{{").replace("}", "}}")

# The upstream block keeps 64 idle connections to the model server, as the service's client
# pool does; keepalive_requests is raised on both sides because nginx's default (1000) would
# close wrk's connections every 1000 requests, which neither uvicorn nor the service does.
NGINX_NOTE = ": its own config, upstream keepalive 64, access log off"
NGINX_CONF = """\
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    upstream model {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


# ─── Targets and results ───


@dataclass(frozen=True)
class Target:
    """One thing wrk loads: `kind` is direct, nginx or service."""

    key: str
    kind: str
    workers: int = 1
    policy: str = "static"
    server: str = ""
    client: str = ""
    # False: BANDIT_METRICS=false, what /metrics costs per request is the difference (issue 14).
    metrics: bool = True

    @property
    def learning(self) -> bool:
        return self.policy == "thompson"

    @property
    def label(self) -> str:
        plural = "s" if self.workers > 1 else ""
        if self.kind == "direct":
            return "direct to model server"
        if self.kind == "nginx":
            return f"nginx, {self.workers} worker{plural}"
        if self.kind == "floor":
            return f"floor proxy, {self.server} (1 process)"
        arms = "1 arm static" if self.policy == "static" else f"{len(THOMPSON_ARMS)} arms thompson"
        metrics = "" if self.metrics else ", metrics off"
        return f"mab {self.server}/{self.client}, {self.workers}w, {arms}{metrics}"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    status_errors: int
    socket_errors: int
    # Of `requests`, how many were feedback posts (the learning runs).
    feedbacks: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def invokes(self) -> int:
        return self.requests - self.feedbacks

    @property
    def failed(self) -> int:
        return self.status_errors + self.socket_errors


@dataclass
class Row:
    target: Target
    loaded: WrkResult
    single: WrkResult
    # CPU seconds of the target's processes, and of Redis, during the loaded run.
    cpu_s: float
    redis_cpu_s: float | None
    log_lines: list[str]

    @property
    def cpu_us_per_request(self) -> float:
        """Per proxied request (feedback posts' cost included, not counted as requests)."""
        return self.cpu_s / max(1, self.loaded.invokes) * 1e6

    @property
    def redis_us_per_request(self) -> float | None:
        return None if self.redis_cpu_s is None else self.redis_cpu_s / max(1, self.loaded.invokes) * 1e6


def parse_targets(text: str, servers: list[str], clients: list[str]) -> list[Target]:
    """`direct,nginx1,service1,service2-thompson,…` into targets, in order; each service target
    once per server layer and upstream client."""
    targets: list[Target] = []
    for key in (part.strip() for part in text.split(",") if part.strip()):
        if key == "direct":
            targets.append(Target(key, "direct"))
        elif match := re.fullmatch(r"nginx(\d*)", key):
            targets += [Target(f"nginx{n}", "nginx", n) for n in ([int(match[1])] if match[1] else [1, 2])]
        elif match := re.fullmatch(r"floor-(uvicorn|uvicorn-h11|granian|granian-asgi|hypercorn)", key):
            targets.append(Target(key, "floor", server=match[1]))
        elif match := re.fullmatch(r"service(\d+)(-thompson)?(-nometrics)?", key):
            policy = "thompson" if match[2] else "static"
            targets += [
                Target(f"{key}-{server}-{client}", "service", int(match[1]), policy, server, client, not match[3])
                for server in servers
                for client in clients
            ]
        else:
            raise SystemExit(
                f"unknown target {key!r}: use direct, nginx, nginxN, floor-SERVER ({', '.join(FLOOR_COMMANDS)}),"
                " serviceN or serviceN-thompson, either with -nometrics"
            )
    return targets


def redis_pid(url: str) -> int | None:
    """The pid of the Redis at `url` when it runs on this machine (its CPU is read from /proc)."""
    try:
        pid = int(redis.Redis.from_url(url).info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


# ─── Tools ───


def ensure_tools(names: list[str]) -> dict[str, str]:
    """Path of each tool (the Debian package of the same name), installed with apt-get when missing."""
    missing = [name for name in names if find_tool(name) is None]
    if missing:
        print(f"proxy_bench: {', '.join(missing)} not found: installing with apt-get install -y {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *missing]
        if os.geteuid() != 0:
            install = ["sudo", *install]
        if subprocess.run(install, env=env).returncode != 0:
            # A fresh machine has no package lists yet; update once, then try again.
            subprocess.run([*install[: install.index("install")], "update", "-q"], env=env, check=False)
            if subprocess.run(install, env=env).returncode != 0:
                raise SystemExit(f"proxy_bench: could not install {' '.join(missing)}; install them and run again")
    paths = {name: find_tool(name) for name in names}
    if any(path is None for path in paths.values()):
        raise SystemExit(f"proxy_bench: still missing after install: {[n for n, p in paths.items() if p is None]}")
    return {name: path for name, path in paths.items() if path is not None}


def find_tool(name: str) -> str | None:
    # nginx lives in /usr/sbin, which is not on every user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def tool_version(name: str, path: str) -> str:
    """`wrk 4.1.0`: wrk prints its version with a copyright line, nginx on stderr."""
    result = subprocess.run([path, "-v"], capture_output=True, text=True)
    match = re.search(r"\d+\.\d+(\.\d+)?", result.stdout + result.stderr)
    return f"{name} {match[0] if match else '?'}"


# ─── Processes ───


@contextlib.contextmanager
def model_servers() -> Iterator[tuple[dict[str, str], int]]:
    """The simulated models, one process: a, b and c (b and c only for the learning runs); their URLs and pid."""
    arms = [f"--arm={name}:{rate}" for name, rate in THOMPSON_ARMS.items()]
    process = spawn([sys.executable, "-m", "loadtest.model_server", *arms])
    try:
        yield model_urls(process), process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def nginx(binary: str, workers: int, upstream: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """nginx on a free port with its own config, pid, logs and temp paths under `workdir`;
    its base URL and master pid."""
    prefix = workdir / f"nginx{workers}"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    host_port = upstream.removeprefix("http://")
    conf.write_text(NGINX_CONF.format(workers=workers, prefix=prefix, upstream=host_port, port=port))
    # -e: without it nginx opens the packaged /var/log/nginx/error.log before reading our config.
    command = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    process = spawn(command, log=prefix / "stderr.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", process, "nginx")
        yield base, process.pid
    finally:
        stop(process, signal.SIGQUIT)  # SIGQUIT is nginx's graceful shutdown


_UVICORN = "-m uvicorn --loop uvloop --no-access-log --no-proxy-headers --no-server-header --log-level warning"
#: The floor proxy under each server candidate, on port {port}.
FLOOR_COMMANDS = {
    "uvicorn": f"{_UVICORN} --http httptools --port {{port}} loadtest.floor_proxy:app",
    "uvicorn-h11": f"{_UVICORN} --http h11 --port {{port}} loadtest.floor_proxy:app",
    "granian": "-m granian --interface rsgi --loop uvloop --http 1 --no-ws --log-level warning --port {port}"
    " loadtest.floor_proxy:app",
    "granian-asgi": "-m granian --interface asgi --loop uvloop --http 1 --no-ws --log-level warning --port {port}"
    " loadtest.floor_proxy:app",
    "hypercorn": "-m hypercorn --worker-class uvloop --log-level warning --bind 127.0.0.1:{port}"
    " loadtest.floor_proxy:app",
}
#: Servers measured only as floor candidates, installed into the venv when missing.
EXTRA_SERVERS = {"hypercorn": "hypercorn"}


@contextlib.contextmanager
def floor_proxy(target: Target, upstream: str, log: Path) -> Iterator[tuple[str, int]]:
    """`loadtest.floor_proxy` under the target's server; its base URL and pid."""
    package = EXTRA_SERVERS.get(target.server)
    if package is not None and importlib.util.find_spec(package) is None:
        print(f"proxy_bench: {package} not found: installing it into this venv with pip")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
    port = free_port()
    command = [sys.executable, *FLOOR_COMMANDS[target.server].format(port=port).split()]
    process = spawn(command, log=log, env={"UPSTREAM": upstream})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", process, "the floor proxy")
        yield base, process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def service(target: Target, urls: dict[str, str], redis_url: str, log: Path) -> Iterator[tuple[str, int]]:
    """`python -m bandit serve` with the target's workers, server and client and a fresh
    experiment; its base URL and pid."""
    port = free_port()
    token = secrets.token_urlsafe(16)
    env = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_ADMIN_TOKEN": token,
        # Benches post rewards without a token, as a client of an open feedback API would.
        "BANDIT_FEEDBACK_OPEN": "true",
        "BANDIT_SECRET": secrets.token_urlsafe(16),
        "BANDIT_PORT": str(port),
        "BANDIT_WORKERS": str(target.workers),
        "BANDIT_SERVER": target.server,
        "BANDIT_UPSTREAM_CLIENT": target.client,
        "BANDIT_LOG_LEVEL": "warning",
        "BANDIT_METRICS": "true" if target.metrics else "false",
    }
    process = spawn([sys.executable, "-m", "bandit", "serve"], log=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", process, "the service")
        create_experiment(base, token, target, urls)
        yield base, process.pid
    finally:
        stop(process)


def create_experiment(base: str, token: str, target: Target, urls: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {token}"}
    # The bench's db may hold the experiment from an earlier run; start from zero counts.
    httpx.delete(f"{base}/api/experiments/{EXPERIMENT}", headers=admin)
    names = list(THOMPSON_ARMS) if target.learning else ["a"]
    payload = {
        "name": EXPERIMENT,
        "arms": [{"name": name, "url": urls[name]} for name in names],
        "policy": {"kind": target.policy},
    }
    response = httpx.post(f"{base}/api/experiments", headers=admin, json=payload)
    if response.status_code != 201:
        raise RuntimeError(f"creating the experiment failed: {response.status_code} {response.text}")


# ─── wrk ───


def wrk_command(wrk: str, script: Path, url: str, connections: int, duration_s: float) -> list[str]:
    return [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script), url]


def run_wrk(command: list[str]) -> WrkResult:
    result = subprocess.run(command, capture_output=True, text=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith(MARKER)), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix(MARKER))
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        status_errors=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        feedbacks=data["feedbacks"],
    )


@dataclass(frozen=True)
class Measured:
    loaded: WrkResult
    single: WrkResult
    cpu_s: float
    redis_cpu_s: float | None


def measure(wrk: str, script: Path, url: str, pids: tuple[int, int | None], args: argparse.Namespace) -> Measured:
    """Warm-up (discarded), then 64 connections with the CPU of the target (and of Redis) read
    across the run, then 1 connection."""
    root, redis_root = pids
    if args.warmup > 0:
        run_wrk(wrk_command(wrk, script, url, 64, args.warmup))
    cpu_before = tree_cpu_seconds(root)
    redis_before = tree_cpu_seconds(redis_root) if redis_root else None
    loaded = run_wrk(wrk_command(wrk, script, url, 64, args.duration))
    cpu_s = tree_cpu_seconds(root) - cpu_before
    redis_cpu_s = tree_cpu_seconds(redis_root) - redis_before if redis_root and redis_before is not None else None
    single = run_wrk(wrk_command(wrk, script, url, 1, args.duration))
    return Measured(loaded, single, cpu_s, redis_cpu_s)


def log_problems(log: Path) -> list[str]:
    """The service's warnings, errors and tracebacks (it logs at warning level to stderr)."""
    if not log.exists():
        return []
    keep = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|Exception|Error:")
    return [line for line in log.read_text(errors="replace").splitlines() if keep.search(line)]


# ─── Report ───


def reference_row(rows: list[Row]) -> Row | None:
    """nginx with 1 worker (else the first nginx run): what every ratio divides by."""
    references = [row for row in rows if row.target.kind == "nginx"]
    return next((row for row in references if row.target.workers == 1), references[0] if references else None)


def added_p50(row: Row, direct: Row | None) -> str:
    return f"{row.single.p50_ms - direct.single.p50_ms:+.3f}" if direct and row is not direct else "-"


def table_cells(row: Row, direct: Row | None, reference: Row | None) -> list[str]:
    redis_us = row.redis_us_per_request
    return [
        row.target.label,
        f"{row.loaded.rps:,.0f}",
        f"{row.loaded.rps / reference.loaded.rps:.2f}" if reference else "-",
        f"{row.cpu_us_per_request:,.0f}" if row.target.kind != "direct" else "-",
        f"{row.cpu_us_per_request / reference.cpu_us_per_request:.1f}"
        if reference and row.target.kind != "direct"
        else "-",
        f"{redis_us:.0f}" if redis_us is not None and row.target.kind == "service" else "-",
        f"{row.loaded.p50_ms:.2f} / {row.loaded.p99_ms:.2f}",
        f"{row.single.p50_ms:.3f}",
        added_p50(row, direct),
        f"{row.loaded.feedbacks:,}" if row.target.learning else "-",
        str(row.loaded.failed + row.single.failed),
    ]


COLUMNS = [
    "target",
    "req/s @64",
    "÷ nginx",
    "CPU µs/req",
    "÷ nginx",
    "Redis µs/req",
    "p50 / p99 @64 (ms)",
    "p50 @1 (ms)",
    "added p50 @1",
    "feedback posts",
    "failed",
]


def aligned(cells: list[str], widths: list[int]) -> str:
    """The first cell left-aligned, the others right-aligned, each in its width."""
    return "".join(
        f"{cell:>{width}}" if i else f"{cell:<{width}}"
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def print_table(rows: list[Row], cpus: int) -> None:
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    reference = reference_row(rows)
    widths = [44, 10, 8, 11, 8, 13, 19, 12, 13, 15, 7]
    print(f"\n{cpus} cores shared by wrk, the proxies, the model server and Redis; ÷ nginx against nginx, 1 worker")
    print(
        "".join(
            f"{name:>{width}}" if i else f"{name:<{width}}"
            for i, (name, width) in enumerate(zip(COLUMNS, widths, strict=True))
        )
    )
    for row in rows:
        cells = table_cells(row, direct, reference)
        print(
            "".join(
                f"{cell:>{width}}" if i else f"{cell:<{width}}"
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )


def print_verdicts(rows: list[Row]) -> None:
    """Issue 13's targets against nginx with 1 worker."""
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    reference = reference_row(rows)
    if direct is None or reference is None:
        return
    print(
        f"\ntargets: CPU µs/request ≤ {TARGET_CPU_RATIO:g}× {reference.target.label}'s (goal {GOAL_CPU_RATIO:g}×),"
        f" req/s @64 ≥ {TARGET_RPS_RATIO}× its with 2 workers, added p50 @1 ≤ {TARGET_ADDED_P50_MS} ms, 0 failed"
    )
    for row in rows:
        if row.target.kind != "service":
            continue
        cpu_ratio = row.cpu_us_per_request / reference.cpu_us_per_request
        rps_ratio = row.loaded.rps / reference.loaded.rps
        added = row.single.p50_ms - direct.single.p50_ms
        failed = row.loaded.failed + row.single.failed
        verdicts = [
            f"CPU {cpu_ratio:.1f}× ({'met' if cpu_ratio <= TARGET_CPU_RATIO else 'missed'})",
            f"req/s {rps_ratio:.2f}×"
            + (f" ({'met' if rps_ratio >= TARGET_RPS_RATIO else 'missed'})" if row.target.workers == 2 else ""),
            f"+{added:.3f} ms ({'met' if added <= TARGET_ADDED_P50_MS else 'missed'})",
            f"{failed} failed ({'met' if failed == 0 else 'missed'})",
        ]
        print(f"  {row.target.label:<44}" + ", ".join(verdicts))


def print_markdown(rows: list[Row], command: str, args: argparse.Namespace, versions: str) -> None:
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    reference = reference_row(rows)
    print(
        f"\n`{command}` ({date.today().isoformat()}; {versions}{NGINX_NOTE if 'nginx' in versions else ''})."
        f" Every target answers `POST …/predict` with a {len(BODY)}-byte JSON body from one simulated model server;"
        f" `wrk -t1 -c64 -d{args.duration:g}s --latency` after a {args.warmup:g} s warm-up (CPU read across it),"
        f" then `wrk -t1 -c1 -d{args.duration:g}s --latency`. Learning runs post feedback for"
        f" {args.feedback_share:.0%} of decisions on the same connections; their CPU per request includes it."
        f" wrk, the proxy, the model server and Redis share the machine's {os.cpu_count()} cores.\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---" + "|---:" * (len(COLUMNS) - 1) + "|")
    for row in rows:
        print("| " + " | ".join(table_cells(row, direct, reference)) + " |")


def print_service_logs(rows: list[Row], limit: int = 30) -> None:
    for row in rows:
        if row.log_lines:
            print(f"\n{row.target.label}: {len(row.log_lines)} warning/error lines in its log; the last {limit}:")
            print("\n".join(f"  {line}" for line in row.log_lines[-limit:]))


# ─── Main ───


def run_target(
    target: Target, tools: dict[str, str], urls: dict[str, str], workdir: Path, args: argparse.Namespace
) -> Row:
    script = workdir / ("feedback.lua" if target.learning else "post.lua")
    log = workdir / f"{target.key}.log"
    with contextlib.ExitStack() as stack:
        redis_root: int | None = None
        if target.kind == "direct":
            url, root = f"{urls['a']}/predict", args.model_pid
        elif target.kind == "nginx":
            base, root = stack.enter_context(nginx(tools["nginx"], target.workers, urls["a"], workdir))
            url = f"{base}/predict"
        elif target.kind == "floor":
            base, root = stack.enter_context(floor_proxy(target, urls["a"], log))
            url = f"{base}/predict"
        else:
            base, root = stack.enter_context(service(target, urls, args.redis_url, log))
            url = f"{base}/invoke/{EXPERIMENT}/predict"
            redis_root = redis_pid(args.redis_url)
        print(f"{target.label}: {url}", flush=True)
        measured = measure(tools["wrk"], script, url, (root, redis_root), args)
    return Row(target, measured.loaded, measured.single, measured.cpu_s, measured.redis_cpu_s, log_problems(log))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk before each target's runs")
    parser.add_argument(
        "--targets",
        default="direct,nginx1,floor-uvicorn,floor-granian,service1,service2,service1-thompson,service2-thompson",
        help="comma-separated: direct, nginx (1 and 2 workers), nginxN, floor-uvicorn, floor-granian, serviceN,"
        " serviceN-thompson",
    )
    parser.add_argument("--servers", default="", help="server layers of the service targets (default: the default)")
    parser.add_argument("--clients", default="", help="upstream clients of the service targets (default: the default)")
    parser.add_argument("--feedback-share", type=float, default=0.2, help="share of decisions given feedback")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="the service's Redis (db 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from bandit.core.settings import Settings

    args = parse_args(argv)
    command = shlex.join(["python", "-m", "loadtest.proxy_bench", *(sys.argv[1:] if argv is None else argv)])
    defaults = Settings()
    servers = [name.strip() for name in args.servers.split(",") if name.strip()] or [defaults.server]
    clients = [name.strip() for name in args.clients.split(",") if name.strip()] or [defaults.upstream_client]
    targets = parse_targets(args.targets, servers, clients)
    needed = ["wrk"] + (["nginx"] if any(target.kind == "nginx" for target in targets) else [])
    tools = ensure_tools(needed)
    versions = ", ".join(tool_version(name, tools[name]) for name in needed)
    cpus = os.cpu_count() or 1
    print(f"{command}\n{versions}; {cpus} cores shared by wrk, the proxies, the model server and Redis")
    with tempfile.TemporaryDirectory(prefix="mab-proxy-bench-") as temp, model_servers() as (urls, model_pid):
        args.model_pid = model_pid
        workdir = Path(temp)
        workdir.chmod(0o755)  # nginx's workers drop root and must reach their temp paths
        (workdir / "post.lua").write_text(WRK_SCRIPT)
        (workdir / "feedback.lua").write_text(WRK_FEEDBACK_SCRIPT.format(body=BODY, share=args.feedback_share))
        rows = [run_target(target, tools, urls, workdir, args) for target in targets]
    print_table(rows, cpus)
    print_verdicts(rows)
    print_markdown(rows, command, args, versions)
    print_service_logs(rows)


if __name__ == "__main__":
    main()
