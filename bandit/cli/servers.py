"""The HTTP servers `mab serve` can run the app under (BANDIT_SERVER), all with the same app.

uvicorn (uvloop and httptools, ASGI) and granian (Rust: hyper and tokio; its RSGI interface,
with the API and dashboard over an ASGI bridge: bandit/service.py's RsgiFrontDoor) are
measured side by side by `python -m loadtest.proxy_bench --servers uvicorn,granian`
(BENCHMARKS.md says which is the default and why). Both speak HTTP/1.1 to clients.
"""

from __future__ import annotations

import os

from bandit.core.settings import Settings, settings_to_environ


def run_server(settings: Settings) -> None:
    """Serve until interrupted, under the server `settings` names."""
    if settings.server == "granian":
        _run_granian(settings)
    else:
        _run_uvicorn(settings)


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level.lower(),
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
        websockets=False,
        log_level=LogLevels(settings.log_level.lower()),
        log_access=False,
    ).serve()
