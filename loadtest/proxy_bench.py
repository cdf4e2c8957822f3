"""Proxy throughput and added latency beside nginx (issue 4): one run, same machine, wrk on loopback.

    python -m loadtest.proxy_bench --duration 10

Every target answers the same request, ``POST …/predict`` with a small JSON body, served in
the end by one simulated model server (``loadtest.model_server``):

- ``direct``: wrk straight to the model server;
- ``nginx``: nginx as a plain reverse proxy with upstream keepalive, its own config in a temp
  dir, 1 and 2 worker processes (``--nginx-workers``);
- ``service1``, ``service2``: ``python -m bandit serve`` with 1 or 2 workers, one experiment of
  one arm with the ``static`` policy: the raw cost of the proxy. ``service1-thompson`` and
  ``service2-thompson`` (two arms, Thompson sampling) are there on request.

Targets run in turn. For each: a warm-up, then ``wrk -t2 -c64`` (req/s, p50, p99) and
``wrk -t1 -c1`` (p50 at one connection). wrk, the proxy, the model server and Redis share the
machine's cores, so compare ratios within a run, not absolute figures across runs.
Installs ``wrk`` and ``nginx`` with apt-get when they are missing.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bandit.cli.local_redis import free_port
from loadtest.processes import model_urls, spawn, stop, wait_http

EXPERIMENT = "proxy-bench"
BODY = '{"features": [0.12, 0.5, 0.93, 0.07]}'
MARKER = "PROXY_BENCH_RESULT"
# Issue 4's targets for the service, stated beside the figures.
TARGET_RATIO = 0.25
TARGET_ADDED_P50_MS = 0.5

# wrk's Lua: the POST, and a machine-readable summary (percentiles in µs) so nothing parses
# wrk's human output, whose units change between µs, ms and s.
WRK_SCRIPT = f"""\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARKER} {{"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

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

    @property
    def label(self) -> str:
        if self.kind == "direct":
            return "direct to model server"
        if self.kind == "nginx":
            return f"nginx, {self.workers} worker{'s' if self.workers > 1 else ''}"
        arms = "1 arm, static" if self.policy == "static" else "2 arms, thompson"
        return f"mab, {self.workers} worker{'s' if self.workers > 1 else ''} ({arms})"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    status_errors: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def failed(self) -> int:
        return self.status_errors + self.socket_errors


@dataclass
class Row:
    target: Target
    loaded: WrkResult
    single: WrkResult
    log_lines: list[str]


def parse_targets(text: str, nginx_workers: list[int]) -> list[Target]:
    """`direct,nginx,service1,service2` (plus nginxN, serviceN-thompson) into targets, in order."""
    targets: list[Target] = []
    for key in (part.strip() for part in text.split(",") if part.strip()):
        if key == "direct":
            targets.append(Target(key, "direct"))
        elif key == "nginx":
            targets += [Target(f"nginx{n}", "nginx", n) for n in nginx_workers]
        elif match := re.fullmatch(r"nginx(\d+)", key):
            targets.append(Target(key, "nginx", int(match[1])))
        elif match := re.fullmatch(r"service(\d+)(-thompson)?", key):
            targets.append(Target(key, "service", int(match[1]), "thompson" if match[2] else "static"))
        else:
            raise SystemExit(f"unknown target {key!r}: use direct, nginx, nginxN, serviceN or serviceN-thompson")
    return targets


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
def model_servers() -> Iterator[dict[str, str]]:
    """Two simulated models, a and b (b only for the two-arm runs); {name: base URL}."""
    process = spawn([sys.executable, "-m", "loadtest.model_server", "--arm=a:0.5", "--arm=b:0.5"])
    try:
        yield model_urls(process)
    finally:
        stop(process)


@contextlib.contextmanager
def nginx(binary: str, workers: int, upstream: str, workdir: Path) -> Iterator[str]:
    """nginx on a free port with its own config, pid, logs and temp paths under `workdir`; its base URL."""
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
        yield base
    finally:
        stop(process, signal.SIGQUIT)  # SIGQUIT is nginx's graceful shutdown


@contextlib.contextmanager
def service(target: Target, urls: dict[str, str], redis_url: str, log: Path) -> Iterator[str]:
    """`python -m bandit serve` with the target's workers and a fresh experiment; its base URL."""
    port = free_port()
    token = secrets.token_urlsafe(16)
    env = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_ADMIN_TOKEN": token,
        "BANDIT_SECRET": secrets.token_urlsafe(16),
        "BANDIT_PORT": str(port),
        "BANDIT_WORKERS": str(target.workers),
        "BANDIT_LOG_LEVEL": "warning",
    }
    process = spawn([sys.executable, "-m", "bandit", "serve"], log=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", process, "the service")
        create_experiment(base, token, target, urls)
        yield base
    finally:
        stop(process)


def create_experiment(base: str, token: str, target: Target, urls: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {token}"}
    # db 5 may hold the experiment from an earlier run; start from zero counts.
    httpx.delete(f"{base}/api/experiments/{EXPERIMENT}", headers=admin)
    names = ["a"] if target.policy == "static" else ["a", "b"]
    payload = {
        "name": EXPERIMENT,
        "arms": [{"name": name, "url": urls[name]} for name in names],
        "policy": {"kind": target.policy},
    }
    response = httpx.post(f"{base}/api/experiments", headers=admin, json=payload)
    if response.status_code != 201:
        raise RuntimeError(f"creating the experiment failed: {response.status_code} {response.text}")


# ─── wrk ───


def wrk_command(wrk: str, script: Path, url: str, threads: int, connections: int, duration_s: float) -> list[str]:
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script), url]


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
    )


def measure(wrk: str, script: Path, url: str, args: argparse.Namespace) -> tuple[WrkResult, WrkResult]:
    """Warm-up (discarded), then 64 connections, then 1 connection."""
    if args.warmup > 0:
        run_wrk(wrk_command(wrk, script, url, 2, 64, args.warmup))
    loaded = run_wrk(wrk_command(wrk, script, url, 2, 64, args.duration))
    single = run_wrk(wrk_command(wrk, script, url, 1, 1, args.duration))
    return loaded, single


def log_problems(log: Path) -> list[str]:
    """The service's warnings, errors and tracebacks (it logs at warning level to stderr)."""
    if not log.exists():
        return []
    keep = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|Exception|Error:")
    return [line for line in log.read_text(errors="replace").splitlines() if keep.search(line)]


# ─── Report ───


def nginx_rows(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.target.kind == "nginx"]


def print_table(rows: list[Row], cpus: int) -> None:
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    references = nginx_rows(rows)
    header = f"{'target':<36}{'req/s @64':>10}{'p50 @64':>10}{'p99 @64':>10}{'p50 @1':>9}{'+p50 @1':>9}"
    header += "".join(f"{'÷' + row.target.key:>9}" for row in references) + f"{'failed':>8}"
    print(f"\nlatencies in ms; +p50 @1 = p50 at 1 connection − direct's; ÷nginxN = req/s @64 ÷ nginx's ({cpus} cores)")
    print("the model server is one Python process: it bounds the req/s of every target behind it, nginx's too")
    print(header)
    for row in rows:
        added = f"{row.single.p50_ms - direct.single.p50_ms:+.3f}" if direct and row is not direct else "-"
        line = f"{row.target.label:<36}{row.loaded.rps:>10,.0f}{row.loaded.p50_ms:>10.2f}{row.loaded.p99_ms:>10.2f}"
        line += f"{row.single.p50_ms:>9.3f}{added:>9}"
        line += "".join(f"{row.loaded.rps / ref.loaded.rps:>9.2f}" for ref in references)
        print(line + f"{row.loaded.failed + row.single.failed:>8}")


def print_verdicts(rows: list[Row]) -> None:
    """Issue 4's targets against nginx with 1 worker (the first nginx run when there is no such run)."""
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    references = nginx_rows(rows)
    reference = next((row for row in references if row.target.workers == 1), references[0] if references else None)
    if direct is None or reference is None:
        return
    print(f"\ntargets: ≥ {TARGET_RATIO}× {reference.target.label}'s req/s", end="")
    print(f", ≤ {TARGET_ADDED_P50_MS} ms added p50 at 1 connection, 0 failed")
    for row in rows:
        if row.target.kind != "service":
            continue
        ratio = row.loaded.rps / reference.loaded.rps
        added = row.single.p50_ms - direct.single.p50_ms
        failed = row.loaded.failed + row.single.failed
        verdicts = [
            f"{ratio:.2f}× ({'met' if ratio >= TARGET_RATIO else 'missed'})",
            f"+{added:.3f} ms ({'met' if added <= TARGET_ADDED_P50_MS else 'missed'})",
            f"{failed} failed ({'met' if failed == 0 else 'missed'})",
        ]
        print(f"  {row.target.label:<36}" + ", ".join(verdicts))


def print_markdown(rows: list[Row], command: str, args: argparse.Namespace, versions: str) -> None:
    direct = next((row for row in rows if row.target.kind == "direct"), None)
    references = nginx_rows(rows)
    print(
        f"\n`{command}` ({date.today().isoformat()}; {versions}{NGINX_NOTE if 'nginx' in versions else ''})."
        f" Every target answers `POST …/predict` with a {len(BODY)}-byte JSON body from one simulated model server;"
        f" `wrk -t2 -c64 -d{args.duration:g}s --latency` after a {args.warmup:g} s warm-up, then"
        f" `wrk -t1 -c1 -d{args.duration:g}s --latency`. wrk, the proxy, the model server and Redis share"
        f" the machine's {os.cpu_count()} cores.\n"
    )
    head = "| target | req/s (64 conn) | p50 / p99 (ms, 64 conn) |"
    head += "".join(f" ÷ {ref.target.label} |" for ref in references)
    head += " p50 at 1 conn (ms) | added p50 at 1 conn (ms) | failed |"
    print(head)
    print("|---" + "|---:" * (head.count("|") - 2) + "|")
    for row in rows:
        added = f"{row.single.p50_ms - direct.single.p50_ms:+.3f}" if direct and row is not direct else "-"
        cells = [
            row.target.label,
            f"{row.loaded.rps:,.0f}",
            f"{row.loaded.p50_ms:.2f} / {row.loaded.p99_ms:.2f}",
            *(f"{row.loaded.rps / ref.loaded.rps:.2f}" for ref in references),
            f"{row.single.p50_ms:.3f}",
            added,
            str(row.loaded.failed + row.single.failed),
        ]
        print("| " + " | ".join(cells) + " |")


def print_service_logs(rows: list[Row], limit: int = 30) -> None:
    for row in rows:
        if row.log_lines:
            print(f"\n{row.target.label}: {len(row.log_lines)} warning/error lines in its log; the last {limit}:")
            print("\n".join(f"  {line}" for line in row.log_lines[-limit:]))


# ─── Main ───


def run_target(
    target: Target, tools: dict[str, str], urls: dict[str, str], workdir: Path, args: argparse.Namespace
) -> Row:
    script = workdir / "post.lua"
    log = workdir / f"{target.key}.log"
    with contextlib.ExitStack() as stack:
        if target.kind == "direct":
            url = f"{urls['a']}/predict"
        elif target.kind == "nginx":
            url = f"{stack.enter_context(nginx(tools['nginx'], target.workers, urls['a'], workdir))}/predict"
        else:
            base = stack.enter_context(service(target, urls, args.redis_url, log))
            url = f"{base}/invoke/{EXPERIMENT}/predict"
        print(f"{target.label}: {url}", flush=True)
        loaded, single = measure(tools["wrk"], script, url, args)
    return Row(target, loaded, single, log_problems(log))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk before each target's runs")
    parser.add_argument(
        "--targets",
        default="direct,nginx,service1,service2",
        help="comma-separated: direct, nginx, nginxN, serviceN, serviceN-thompson",
    )
    parser.add_argument("--nginx-workers", default="1,2", help="worker_processes for the `nginx` target, e.g. 1,2")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="the service's Redis (db 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "loadtest.proxy_bench", *(sys.argv[1:] if argv is None else argv)])
    targets = parse_targets(args.targets, [int(n) for n in args.nginx_workers.split(",") if n.strip()])
    needed = ["wrk"] + (["nginx"] if any(target.kind == "nginx" for target in targets) else [])
    tools = ensure_tools(needed)
    versions = ", ".join(tool_version(name, tools[name]) for name in needed)
    cpus = os.cpu_count() or 1
    print(f"{command}\n{versions}; {cpus} cores shared by wrk, the proxies, the model server and Redis")
    with tempfile.TemporaryDirectory(prefix="mab-proxy-bench-") as temp, model_servers() as urls:
        workdir = Path(temp)
        workdir.chmod(0o755)  # nginx's workers drop root and must reach their temp paths
        (workdir / "post.lua").write_text(WRK_SCRIPT)
        rows = [run_target(target, tools, urls, workdir, args) for target in targets]
    print_table(rows, cpus)
    print_verdicts(rows)
    print_markdown(rows, command, args, versions)
    print_service_logs(rows)


if __name__ == "__main__":
    main()
