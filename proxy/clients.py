"""The upstream clients the service can forward with, by name (BANDIT_UPSTREAM_CLIENT).

Measured side by side by `python -m loadtest.upstream_clients` (BENCHMARKS.md). Clients
whose library is an optional dependency are imported only when chosen.
"""

from __future__ import annotations

from typing import Literal

from proxy.upstream import Timeouts, UpstreamClient

ClientName = Literal["pyreqwest", "aiohttp", "httpx", "aiosonic", "httpx-aiohttp"]


def make_upstream_client(name: ClientName, timeouts: Timeouts) -> UpstreamClient:
    if name == "pyreqwest":
        from proxy.pyreqwest_client import PyreqwestUpstreamClient

        return PyreqwestUpstreamClient(timeouts=timeouts)
    if name == "aiohttp":
        from proxy.aiohttp_client import AiohttpUpstreamClient

        return AiohttpUpstreamClient()
    if name == "httpx":
        from proxy.httpx_client import HttpxUpstreamClient

        return HttpxUpstreamClient()
    if name == "aiosonic":
        from proxy.aiosonic_client import AiosonicUpstreamClient

        return AiosonicUpstreamClient()
    if name == "httpx-aiohttp":
        from proxy.httpx_aiohttp_client import HttpxAiohttpUpstreamClient

        return HttpxAiohttpUpstreamClient()
    raise ValueError(f"unknown upstream client {name!r}")
