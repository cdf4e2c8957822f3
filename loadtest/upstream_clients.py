"""The upstream clients side by side, client alone (no proxy), in one run (issue 4).

    python -m loadtest.upstream_clients --duration 5 --rounds 3

Every client in `CLIENTS` that imports sends the same request, ``POST /predict`` with a
small JSON body and the headers the proxy forwards, through its `UpstreamClient` adapter
(so the adapter's own cost counts), to the same upstream: a minimal HTTP/1.1 keep-alive
server on raw asyncio protocols and uvloop, in a process of its own, so that the server is
not the bottleneck. Each measurement runs in a fresh process: a warm-up, then N requests
in flight for a fixed duration, under uvloop as the service runs. It reports req/s, the
client process's CPU per request (`time.process_time`, all its threads: pyreqwest's Rust
runtime thread counts too), p50/p99 latency of a whole request (send, read the body,
close), errors, and the upstream server's CPU share (to show whether it was saturated).
Rounds interleave the clients; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

# id -> (module, class, distribution whose version is reported)
CLIENTS = {
    "aiohttp": ("proxy.clients.aiohttp", "AiohttpUpstreamClient", "aiohttp"),
    "httpx": ("proxy.clients.httpx", "HttpxUpstreamClient", "httpx"),
    "pyreqwest": ("proxy.clients.pyreqwest", "PyreqwestUpstreamClient", "pyreqwest"),
    "aiosonic": ("proxy.clients.aiosonic", "AiosonicUpstreamClient", "aiosonic"),
    "httpx-aiohttp": ("proxy.clients.httpx_aiohttp", "HttpxAiohttpUpstreamClient", "httpx-aiohttp"),
}
BASELINE = "aiohttp"

REQUEST_BODY = b'{"features": [0.12, 0.5, 0.33, 0.9], "model": "v1"}'
REQUEST_HEADERS = [
    (b"content-type", b"application/json"),
    (b"accept", b"*/*"),
    (b"user-agent", b"loadtest/1"),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"http"),
    (b"content-length", str(len(REQUEST_BODY)).encode()),
]
RESPONSE_BODY = b'{"model": "v1", "prediction": 0.7310585786, "outcome": 0}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(RESPONSE_BODY),
    RESPONSE_BODY,
)


# --- the upstream ------------------------------------------------------------------------------------


class _Upstream(asyncio.Protocol):
    """Answers every request on a keep-alive connection with RESPONSE; bodies framed by Content-Length."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            start = head.find(b"\r\ncontent-length:")
            length = int(head[start + 17 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(RESPONSE)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- one measurement, in its own process ------------------------------------------------------------


def _load(client_id: str) -> Callable[[], Any]:
    module_name, class_name, _ = CLIENTS[client_id]
    factory: Callable[[], Any] = getattr(importlib.import_module(module_name), class_name)
    return factory


async def _measure(
    client_id: str, port: int, in_flight: int, duration_s: float, warmup_s: float, server_pid: int
) -> dict[str, Any]:
    from proxy.clients.base import Origin, Timeouts

    client = _load(client_id)()
    origin = Origin("http", "127.0.0.1", port, "")
    timeouts = Timeouts(5.0, 10.0)
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def worker(deadline: float, record: bool) -> None:
        while (started := time.perf_counter()) < deadline:
            try:
                response = await client.send("POST", origin, "/predict", REQUEST_HEADERS, REQUEST_BODY, timeouts)
                try:
                    async for _ in response.body():
                        pass
                finally:
                    await response.close()
            except Exception as error:
                if record:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                continue
            if record:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(time.perf_counter() + warmup_s, False) for _ in range(in_flight)))
    cpu, server_cpu, started = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    await asyncio.gather(*(worker(started + duration_s, True) for _ in range(in_flight)))
    wall = time.perf_counter() - started
    cpu, server_cpu = time.process_time() - cpu, _cpu_seconds(server_pid) - server_cpu
    await client.close()

    latencies.sort()
    count = len(latencies)
    return {
        "client": client_id,
        "in_flight": in_flight,
        "requests": count,
        "rps": count / wall,
        "cpu_us": cpu / max(count, 1) * 1e6,
        "p50_ms": latencies[count // 2] * 1e3 if count else float("nan"),
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1e3 if count else float("nan"),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "server_cpu": server_cpu / wall,
    }


def _run_measure(args: argparse.Namespace) -> None:
    import uvloop

    try:
        _load(args.measure)
    except ImportError as error:
        print(json.dumps({"client": args.measure, "skipped": str(error)}))
        return
    result = uvloop.run(_measure(args.measure, args.port, args.in_flight, args.duration, args.warmup, args.server_pid))
    print(json.dumps(result))


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Row:
    client: str
    in_flight: int
    rps: float
    rps_range: tuple[float, float]  # over the rounds
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float


def _measure_in_child(
    client_id: str, port: int, in_flight: int, args: argparse.Namespace, server_pid: int
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "loadtest.upstream_clients", "--measure", client_id, "--port", str(port),
        "--in-flight", str(in_flight), "--duration", str(args.duration), "--warmup", str(args.warmup),
        "--server-pid", str(server_pid),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + args.warmup + 120)
    if done.returncode != 0:
        return {"client": client_id, "skipped": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _versions(clients: list[str]) -> str:
    names = ["uvloop", *sorted({CLIENTS[c][2] for c in clients} | {"httpx", "aiohttp"})]
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def _aligned(cells: list[str], widths: list[int]) -> str:
    """The first cell left-aligned, the rest right-aligned."""
    first, *rest = zip(cells, widths, strict=True)
    return f"{first[0]:<{first[1]}}" + "".join(f"{cell:>{width}}" for cell, width in rest)


def _print_tables(rows: list[Row], skipped: dict[str, str], command: str, args: argparse.Namespace) -> None:
    ratio = f"x {BASELINE}"
    columns = ["client", "in flight", "req/s", "range", ratio, "CPU us/req", ratio, "p50 ms", "p99 ms", "errors"]
    columns.append("server CPU")
    widths = [14, 10, 9, 16, 11, 11, 11, 9, 9, 7, 11]
    baseline = {row.in_flight: row for row in rows if row.client == BASELINE}
    markdown = []
    for in_flight in args.in_flight:
        print(f"\n{in_flight} in flight")
        print(_aligned(columns, widths))
        for row in sorted((r for r in rows if r.in_flight == in_flight), key=lambda r: -r.rps):
            base = baseline.get(in_flight)
            cells = [
                row.client,
                str(row.in_flight),
                f"{row.rps:,.0f}",
                f"{row.rps_range[0]:,.0f}-{row.rps_range[1]:,.0f}",
                f"{row.rps / base.rps:.2f}" if base and base.rps else "-",
                f"{row.cpu_us:,.0f}",
                f"{row.cpu_us / base.cpu_us:.2f}" if base and base.cpu_us else "-",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                str(row.errors),
                f"{row.server_cpu:.0%}",
            ]
            print(_aligned(cells, widths))
            markdown.append("| " + " | ".join(cells) + " |")
    for client_id, reason in skipped.items():
        print(f"skipped {client_id}: {reason}")

    print("\n--- markdown ---\n")
    print(f"`{command}`\n")
    print(
        f"{os.cpu_count()}-core machine; the upstream server shares the cores. Client alone (no proxy), "
        f"`POST /predict` ({len(REQUEST_BODY)} B body, {len(RESPONSE_BODY)} B answer) to a raw asyncio + uvloop "
        f"HTTP/1.1 keep-alive server in its own process; {args.duration:g} s per measurement after "
        f"{args.warmup:g} s of warm-up, each in a fresh process under uvloop; median of {args.rounds} rounds "
        f"(range: lowest and highest req/s of the rounds). CPU is the client process's (all its threads) per "
        f"request. Python {platform.python_version()}, {_versions(list(CLIENTS))}.\n"
    )
    print("| " + " | ".join(columns) + " |")
    print("|---" + "|---:" * (len(columns) - 1) + "|")
    for line in markdown:
        print(line)
    for client_id, reason in skipped.items():
        print(f"\n{client_id} not measured: {reason}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per client and load")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=list(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop

        uvloop.run(_serve())
        return
    if args.measure:
        args.in_flight = args.in_flight[0]
        _run_measure(args)
        return

    command = "python -m loadtest.upstream_clients " + shlex.join(sys.argv[1:] if argv is None else argv)
    server = subprocess.Popen(
        [sys.executable, "-m", "loadtest.upstream_clients", "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        skipped: dict[str, str] = {}
        for round_no in range(1, args.rounds + 1):
            for in_flight in args.in_flight:
                for client_id in args.clients:
                    if client_id in skipped:
                        continue
                    result = _measure_in_child(client_id, port, in_flight, args, server.pid)
                    if "skipped" in result:
                        skipped[client_id] = result["skipped"]
                        print(f"round {round_no}: {client_id} skipped: {result['skipped']}", flush=True)
                        continue
                    results.setdefault((client_id, in_flight), []).append(result)
                    print(
                        f"round {round_no}: {client_id:<14} {in_flight:>3} in flight {result['rps']:>9,.0f} req/s "
                        f"{result['cpu_us']:>7,.0f} µs CPU/req  p50 {result['p50_ms']:.2f} ms  "
                        f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']} {result['error_kinds'] or ''}"
                        f"  server CPU {result['server_cpu']:.0%}",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(timeout=10)

    rows = [
        Row(
            client_id,
            in_flight,
            statistics.median(r["rps"] for r in runs),
            (min(r["rps"] for r in runs), max(r["rps"] for r in runs)),
            statistics.median(r["cpu_us"] for r in runs),
            statistics.median(r["p50_ms"] for r in runs),
            statistics.median(r["p99_ms"] for r in runs),
            sum(r["errors"] for r in runs),
            statistics.median(r["server_cpu"] for r in runs),
        )
        for (client_id, in_flight), runs in results.items()
    ]
    _print_tables(rows, skipped, command, args)


if __name__ == "__main__":
    main()
