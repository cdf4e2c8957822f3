"""The HTTP servers `mab serve` can run the app under (BANDIT_SERVER), all with the same app.

uvicorn (uvloop and httptools, ASGI) and granian (Rust: hyper and tokio; its RSGI interface,
with the API and dashboard over an ASGI bridge: bandit/service.py's RsgiFrontDoor) are
measured side by side by `python -m loadtest.proxy_bench --servers uvicorn,granian`
(BENCHMARKS.md says which is the default and why). Both speak HTTP/1.1 to clients.

The request head's limits (BANDIT_MAX_HEADER_BYTES, BANDIT_MAX_HEADERS, BANDIT_HEADER_TIMEOUT) and
the refusal of protocol upgrades are uvicorn's protocol in bandit/cli/http_limits.py; granian gets
hyper's nearest settings, which enforce less (tests/test_server_limits.py says exactly what).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator

from bandit.cli.log_format import logging_config
from bandit.core.settings import Settings, settings_to_environ

#: The name of a run's metrics directory starts with this, then the pid of `mab serve`.
METRICS_PREFIX = "mab-metrics-"


def run_server(settings: Settings) -> None:
    """Serve until interrupted, under the server `settings` names."""
    with metrics_directory(settings):
        if settings.server == "granian":
            _run_granian(settings)
        else:
            _run_uvicorn(settings)


@contextlib.contextmanager
def metrics_directory(settings: Settings) -> Iterator[None]:
    """A directory where every worker of this replica keeps its metric values, so that a scrape
    of any worker sums them all (prometheus-client's multiprocess mode). It must be named before
    any worker imports prometheus-client, hence here. It is new for each run, and removed on exit:
    values of an earlier run would be counted again, and another replica's would be summed with
    this one's. PROMETHEUS_MULTIPROC_DIR, when set, says where to make it (a tmpfs, a volume)."""
    if not settings.metrics:
        yield
        return
    parent = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
        _remove_abandoned(parent)
    made = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=parent)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
        yield
    finally:
        if parent is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = parent
        shutil.rmtree(made, ignore_errors=True)


def _remove_abandoned(parent: str) -> None:
    """The directories of earlier runs whose process is gone (killed before it could remove its own)."""
    for path in glob.glob(os.path.join(parent, f"{METRICS_PREFIX}*-*")):
        pid = os.path.basename(path).removeprefix(METRICS_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    from bandit.cli.http_limits import RequestLimits, limited_protocol

    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with limits on the request head and every protocol upgrade refused
        # (bandit/cli/http_limits.py); the limits travel to the workers inside uvicorn's Config.
        "http": limited_protocol(RequestLimits.from_settings(settings)),
        # Nothing here serves WebSockets: an upgrade is answered 400 by the protocol above.
        "ws": "none",
        "log_level": settings.log_level.lower(),
        # Every process, workers included, logs in BANDIT_LOG_FORMAT with the secrets redacted.
        "log_config": logging_config(settings),
        "access_log": False,
        # The proxy writes X-Forwarded-* itself and trusts none from its clients; skipping uvicorn's
        # proxy-headers middleware and its Server header saves work on every request.
        "proxy_headers": False,
        "server_header": False,
    }
    if settings.workers > 1:
        # Workers re-import the factory, so they read the settings from the environment.
        os.environ.update(settings_to_environ(settings))
        uvicorn.run("bandit.service:create_asgi", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    else:
        from bandit.service import create_asgi

        uvicorn.run(create_asgi(settings), **common)  # type: ignore[arg-type]


def _run_granian(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    # Granian always serves from worker processes, which re-import the factory: they read the
    # settings from the environment, as uvicorn's workers do.
    os.environ.update(settings_to_environ(settings))
    Granian(
        "bandit.service:create_rsgi",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        # hyper's nearest to the head limits. A head must fit its read buffer (431 past it; 8 KiB
        # at least), though one read can take the buffer past it; bodies arrive in pieces no
        # larger, which slows uploads (50 MB: ~1.8x at 64 KiB). A head must arrive within the
        # timeout, and so must a keep-alive connection's next request, or it is closed unanswered.
        # Its header count limit is its own, 100.
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(settings.header_timeout_s * 1000)),
            max_buffer_size=max(8192, settings.max_header_bytes),
        ),
        websockets=False,
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=logging_config(settings),
        log_access=False,
    ).serve()
