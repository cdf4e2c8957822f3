"""Child processes of the benchmarks: started in their own group, awaited, and stopped whole."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

#: How long a stopped process gets to flush and exit before its whole group is killed.
STOP_GRACE_S = 10.0


def spawn(command: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `command` in its own process group, stderr (and stdout unless piped) to `log`."""
    with contextlib.ExitStack() as files:
        # The child keeps its own copy of the log's descriptor; ours closes on return.
        sink: IO[str] | int = files.enter_context(log.open("a")) if log else subprocess.DEVNULL
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE if log is None else sink,
            stderr=sink,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """`sig`, then SIGKILL after a grace period; then SIGKILL whatever is left of the group (uvicorn workers)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.stdout is not None:
        process.stdout.close()


def wait_http(url: str, process: subprocess.Popen[str], what: str, timeout_s: float = 30.0) -> None:
    """Wait until `url` answers 200, failing early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} at {url} was not ready after {timeout_s:.0f} s")


def model_urls(process: subprocess.Popen[str]) -> dict[str, str]:
    """The {name: base URL} line `python -m loadtest.model_server` prints once it listens."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("the model servers exited before listening")
    urls: dict[str, str] = json.loads(line)
    return urls


def control_url(process: subprocess.Popen[str]) -> str:
    """The control API's URL: the line after the {name: URL} line of `model_server --control`."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("the model servers exited before announcing their control API")
    url: str = json.loads(line)["control"]
    return url


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc: uvicorn's workers under its supervisor)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command name: state, ppid, ...
            state, ppid = status.read_text().rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state not in ("Z", "X"):
                found.append(int(status.parent.name))
    return sorted(found)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and every live descendant (all threads of each), from /proc (Linux).

    Children are found through /proc/<pid>/task/<tid>/children; a process that exited is not
    counted any more, so measure across a window in which the processes keep running.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending, seen = 0.0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # exited meanwhile
    return total
