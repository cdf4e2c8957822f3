"""`ANY /invoke/{experiment}/{path}`: choose an arm, forward, sign the decision.

A raw ASGI app mounted under Litestar: the hot path skips request parsing and
dependency injection, and touches Redis never (snapshots and the recorder do).
Bodies stream both ways; a request whose connection could not be made goes once to
another healthy arm; shadow arms get a copy in the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bandit.core.decision_ids import DecisionSigner
from proxy.clients.base import Headers, UpstreamClient, UpstreamResponse
from proxy.exceptions import BadTarget, BodyTooLarge, ClientDisconnected, UpstreamError
from proxy.headers import request_headers, response_headers
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry
from proxy.request_body import StreamedBody, read_request_body
from proxy.shadow import MirroredRequest, ShadowMirror
from proxy.snapshot import ArmRoute, Snapshot
from proxy.sticky import StickyAssignments
from proxy.target import parse_invoke_path, upstream_target

log = logging.getLogger("mab.proxy")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_encode = msgspec.json.Encoder().encode


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
        mirror: ShadowMirror | None = None,
        sticky: StickyAssignments | None = None,
    ) -> None:
        self.registry = registry
        self.recorder = recorder
        self.client = client
        self.signer = signer
        self.health = health
        self.max_body_bytes = max_body_bytes
        self.mirror = mirror
        self.sticky = sticky or StickyAssignments()

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
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        declared = next((value for key, value in headers if key == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _error(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            return
        try:
            body = await read_request_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await _error(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            return
        except ClientDisconnected:
            return

        unit = next((value for key, value in headers if key == b"x-bandit-unit"), None)
        client = scope.get("client")
        forwarded = request_headers(headers, client[0] if client else None, scope.get("scheme", "http"))
        if isinstance(body, StreamedBody) and declared is not None:
            # Streamed on with the length the client declared, so the upstream needs no chunked decoding.
            forwarded.append((b"content-length", declared))
        await self._forward(send, scope["method"], snapshot, unit, target, forwarded, body)

    async def _forward(
        self,
        send: Send,
        method: str,
        snapshot: Snapshot,
        unit: bytes | None,
        target: str,
        headers: Headers,
        body: bytes | StreamedBody,
    ) -> None:
        experiment = snapshot.experiment
        name = experiment.name
        index = self._choose(snapshot, unit)
        response: UpstreamResponse | None = None
        for attempt in (1, 2):
            arm = snapshot.routes[index]
            started = time.perf_counter()
            self.health.sending(arm.url)
            try:
                response = await self.client.send(method, arm.origin, target, headers, body, arm.timeouts)
            except UpstreamError as error:
                self.recorder.record(name, experiment.incarnation, arm.name, None, error=True)
                self.health.observe(arm.url, failed=True, connection_failed=error.retryable)
                if isinstance(body, StreamedBody) and body.too_large:
                    await _error(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
                    return
                log.warning("arm %s of %s failed: %s: %s", arm.name, name, type(error).__name__, error)
                # Nothing reached the upstream and the body can be sent again: one more try elsewhere.
                replayable = not (isinstance(body, StreamedBody) and body.started)
                alternative = snapshot.choose_other(index, self._healthy_index(snapshot))
                if attempt == 1 and error.retryable and replayable and alternative is not None:
                    log.info("request to %s retried on arm %s", name, snapshot.routes[alternative].name)
                    index = alternative
                    continue
                await _error(
                    send, error.status_code, f"arm {arm.name!r}: {error.message}", arm=arm.name, experiment=name
                )
                return
            break
        assert response is not None
        arm = snapshot.routes[index]
        # Time to the upstream's response headers: what a latency penalty charges the arm for.
        latency_us = int((time.perf_counter() - started) * 1e6)
        decision = self.signer.sign(name, arm.name, experiment.incarnation, latency_us=latency_us)
        if isinstance(body, bytes) and snapshot.shadows:
            self._mirror(snapshot, method, target, headers, body)
        await self._relay(send, response, snapshot, arm, decision, started)

    async def _relay(
        self,
        send: Send,
        response: UpstreamResponse,
        snapshot: Snapshot,
        arm: ArmRoute,
        decision: str,
        started: float,
    ) -> None:
        """Stream the upstream's answer back with the bandit headers, then count it."""
        experiment = snapshot.experiment
        out_headers = response_headers(response.headers)
        out_headers += [
            (b"x-bandit-experiment", snapshot.header_value),
            (b"x-bandit-arm", arm.header_value),
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
            log.warning("arm %s of %s broke off its response: %s", arm.name, experiment.name, error)
        finally:
            await response.close()
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.recorder.record(experiment.name, experiment.incarnation, arm.name, latency_ms, error=failed)
            self.health.observe(arm.url, failed=failed)

    def _choose(self, snapshot: Snapshot, unit: bytes | None) -> int:
        healthy = self._healthy_index(snapshot)
        if not unit or snapshot.policy is None:
            return snapshot.choose_healthy(healthy)
        # A unit keeps the arm it was first given (for the TTL) while that arm serves and is healthy;
        # a new unit hashes onto the allocation, so every replica gives it the same arm.
        unit_id = unit.decode("latin-1")
        remembered = self.sticky.get(snapshot.name, unit_id)
        index = snapshot.serving_index(remembered) if remembered is not None else None
        if index is None:
            index = snapshot.choose_for_unit(unit_id)
            self.sticky.remember(snapshot.name, unit_id, snapshot.routes[index].name)
        if healthy(index):
            return index
        return snapshot.choose_other(index, healthy) or index

    def _healthy_index(self, snapshot: Snapshot) -> Callable[[int], bool]:
        routes = snapshot.routes
        return lambda index: self.health.is_healthy(routes[index].url)

    def _mirror(self, snapshot: Snapshot, method: str, target: str, headers: Headers, body: bytes) -> None:
        """Offer a copy to each shadow arm (small, whole bodies only: a stream cannot be read twice)."""
        if self.mirror is None:
            return
        experiment = snapshot.experiment
        for arm in snapshot.shadows:
            if ShadowMirror.wanted(arm.mirror_percent):
                self.mirror.offer(
                    MirroredRequest(
                        experiment.name,
                        experiment.incarnation,
                        arm.name,
                        arm.url,
                        arm.origin,
                        method,
                        target,
                        headers,
                        body,
                        arm.timeouts,
                    )
                )


async def _error(send: Send, status: int, detail: str, **bandit_headers: str) -> None:
    """A JSON error in the same shape as the rest of the API."""
    body = _encode({"status_code": status, "detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(f"x-bandit-{key}".encode(), value.encode()) for key, value in bandit_headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
