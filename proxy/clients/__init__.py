"""The upstream clients the proxy forwards with, behind one interface (`base`), chosen by name
(BANDIT_UPSTREAM_CLIENT).

Measured side by side by `python -m loadtest.upstream_clients` (BENCHMARKS.md). Clients
whose library is an optional dependency are imported only when chosen.
"""

from __future__ import annotations

import typing

from proxy.clients.base import Headers, Origin, RequestBody, Timeouts, UpstreamClient, UpstreamResponse

__all__ = [
    "ClientName",
    "Headers",
    "Origin",
    "RequestBody",
    "Timeouts",
    "UpstreamClient",
    "UpstreamResponse",
    "make_upstream_client",
]

ClientName = typing.Literal["pyreqwest", "aiohttp", "httpx", "aiosonic", "httpx-aiohttp"]


def make_upstream_client(name: ClientName, timeouts: Timeouts) -> UpstreamClient:
    if name == "pyreqwest":
        from proxy.clients.pyreqwest import PyreqwestUpstreamClient

        return PyreqwestUpstreamClient(timeouts=timeouts)
    if name == "aiohttp":
        from proxy.clients.aiohttp import AiohttpUpstreamClient

        return AiohttpUpstreamClient()
    if name == "httpx":
        from proxy.clients.httpx import HttpxUpstreamClient

        return HttpxUpstreamClient()
    if name == "aiosonic":
        from proxy.clients.aiosonic import AiosonicUpstreamClient

        return AiosonicUpstreamClient()
    if name == "httpx-aiohttp":
        from proxy.clients.httpx_aiohttp import HttpxAiohttpUpstreamClient

        return HttpxAiohttpUpstreamClient()
    raise ValueError(f"unknown upstream client {name!r}")
