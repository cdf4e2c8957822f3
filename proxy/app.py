"""`ANY /invoke/{experiment}/{path}`: choose an arm, forward, sign the decision.

A raw ASGI app mounted under Litestar: the hot path skips request parsing and
dependency injection, and touches Redis never (snapshots and the recorder do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bandit.decision_ids import DecisionSigner
from proxy.exceptions import UpstreamError
from proxy.headers import request_headers, response_headers
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry
from proxy.target import BadTarget, parse_invoke_path, upstream_target
from proxy.upstream import Origin, UpstreamClient

log = logging.getLogger("mab.proxy")
Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
_encode = msgspec.json.Encoder().encode


class BodyTooLarge(Exception):
    pass


class ProxyApp:
    """The ASGI callable behind /invoke."""

    def __init__(
        self,
        registry: SnapshotRegistry,
        recorder: DecisionRecorder,
        client: UpstreamClient,
        signer: DecisionSigner,
        health: ArmHealth,
        max_body_bytes: int,
        timeout_s: float,
    ) -> None:
        self.registry = registry
        self.recorder = recorder
        self.client = client
        self.signer = signer
        self.health = health
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self._origins: dict[str, Origin] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await _error(send, 404, "only HTTP requests are proxied")
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        try:
            name, rest = parse_invoke_path(raw_path)
            target = upstream_target(rest, scope.get("query_string", b""))
        except BadTarget as error:
            await _error(send, 400, str(error))
            return
        snapshot = self.registry.get(name) or await self.registry.load(name)
        if snapshot is None:
            await _error(send, 404, f"experiment {name!r} does not exist")
            return
        try:
            body = await self._read_body(scope, receive)
        except BodyTooLarge:
            await _error(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            return

        headers: list[tuple[bytes, bytes]] = scope["headers"]
        unit = next((value for key, value in headers if key == b"x-bandit-unit"), None)
        index = snapshot.choose_for_unit(unit.decode("latin-1")) if unit else snapshot.choose()
        arm = snapshot.experiment.arms[index]
        experiment = snapshot.experiment
        client = scope.get("client")
        forwarded = request_headers(headers, client[0] if client else None, scope.get("scheme", "http"))

        started = time.perf_counter()
        try:
            response = await self.client.send(
                scope["method"], self._origin(arm.url), target, forwarded, body, self.timeout_s
            )
        except UpstreamError as error:
            self.recorder.record(name, experiment.incarnation, arm.name, None, error=True)
            self.health.observe(name, arm.name, failed=True)
            log.warning("arm %s of %s failed: %s: %s", arm.name, name, type(error).__name__, error)
            await _error(send, error.status_code, f"arm {arm.name!r}: {error.message}", arm=arm.name, experiment=name)
            return

        # Time to the upstream's response headers: what a latency penalty charges the arm for.
        latency_us = int((time.perf_counter() - started) * 1e6)
        decision = self.signer.sign(name, arm.name, experiment.incarnation, latency_us=latency_us)
        out_headers = response_headers(response.headers)
        out_headers += [
            (b"x-bandit-experiment", name.encode()),
            (b"x-bandit-arm", arm.name.encode()),
            (b"x-bandit-decision", decision.encode()),
        ]
        failed = response.status >= 500
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
            async for chunk in response.body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as error:
            # Headers are gone already: all that is left is to cut the response short.
            failed = True
            log.warning("arm %s of %s broke off its response: %s", arm.name, name, error)
        finally:
            await response.close()
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.recorder.record(name, experiment.incarnation, arm.name, latency_ms, error=failed)
            self.health.observe(name, arm.name, failed=failed)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _origin(self, url: str) -> Origin:
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = Origin.from_url(url)
        return origin


async def _error(send: Send, status: int, detail: str, **bandit_headers: str) -> None:
    """A JSON error in the same shape as the rest of the API."""
    body = _encode({"status_code": status, "detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(f"x-bandit-{key}".encode(), value.encode()) for key, value in bandit_headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
