"""Both upstream clients against a real loopback model server: same behaviour, same errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bandit.local_redis import free_port
from proxy.aiohttp_client import AiohttpUpstreamClient
from proxy.exceptions import UpstreamUnreachable
from proxy.httpx_client import HttpxUpstreamClient
from proxy.upstream import Origin, Timeouts, UpstreamClient
from tests.servers import ModelServers

CLIENTS: list[Callable[[], UpstreamClient]] = [AiohttpUpstreamClient, HttpxUpstreamClient]


@pytest.mark.parametrize("make_client", CLIENTS, ids=["aiohttp", "httpx"])
async def test_sends_method_target_headers_body_and_streams_back(
    models: ModelServers, make_client: Callable[[], UpstreamClient]
) -> None:
    client = make_client()
    try:
        origin = Origin.from_url(models.urls["v1"])
        response = await client.send(
            "PATCH", origin, "/echo/a%20b?q=%2F", [(b"x-test", b"1")], b"body bytes", Timeouts(5, 5)
        )
        body = b"".join([chunk async for chunk in response.body()])
        await response.close()
    finally:
        await client.close()
    echoed = json.loads(body)
    assert response.status == 200
    assert (echoed["method"], echoed["raw_path"], echoed["query"], echoed["body"]) == (
        "PATCH",
        "/echo/a%20b",
        "q=%2F",
        "body bytes",
    )
    assert ["x-test", "1"] in echoed["headers"]
    assert (b"content-type", b"application/json") in [(k.lower(), v) for k, v in response.headers]


@pytest.mark.parametrize("make_client", CLIENTS, ids=["aiohttp", "httpx"])
async def test_refused_connection_is_upstream_unreachable(make_client: Callable[[], UpstreamClient]) -> None:
    client = make_client()
    try:
        with pytest.raises(UpstreamUnreachable):
            await client.send("GET", Origin("http", "127.0.0.1", free_port(), ""), "/", [], b"", Timeouts(5, 5))
    finally:
        await client.close()
