"""`ANY /invoke/{experiment}/{path}`: choose an arm, forward, sign the decision.

One forwarding path behind two front ends: `ProxyApp.__call__` is a raw ASGI app (uvicorn,
or mounted under Litestar), `ProxyApp.rsgi` is granian's RSGI interface (proxy/rsgi.py),
which skips the ASGI message dicts. Both hand `forward` the request and a `Responder` that
writes the answer their way. The hot path skips request parsing and dependency injection,
touches Redis never (snapshots and the recorder do), and reads each header list once.
Bodies stream both ways; a request whose connection could not be made goes once to
another healthy arm; shadow arms get a copy in the background.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from bandit.core.decision_ids import DecisionSigner
from bandit.store.decision_log import LoggedDecision, sampled
from bandit.telemetry.tracing import InvokeTracer
from proxy.admission import ArmSlots
from proxy.clients.base import Headers, UpstreamClient, UpstreamResponse
from proxy.exceptions import (
    HTTP_5XX,
    BadTarget,
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.headers import IncomingRequest, request_headers, response_headers
from proxy.health import ArmHealth, HealthKey
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry
from proxy.request_body import BodyLimits, BufferBudget, Receive, StreamedBody, UploadFault, read_request_body
from proxy.shadow import MirroredRequest, ShadowMirror
from proxy.snapshot import ArmRoute, Snapshot
from proxy.sticky import StickyAssignments
from proxy.target import parse_invoke_path, upstream_target
from proxy.wait_watch import WaitTimedOut, WaitWatch

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("mab.proxy")
Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_encode = msgspec.json.Encoder().encode


class Responder(Protocol):
    """Writes one answer to the client, whichever server interface carries it."""

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """The complete answer at once."""

    async def start(self, status: int, headers: Headers) -> None:
        """Status and headers of an answer whose body follows in `chunk`s."""

    async def chunk(self, data: bytes) -> None: ...

    async def end(self) -> None: ...


class AsgiResponder:
    """A `Responder` over ASGI's `send`."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers: Headers) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class _StatusSeen:
    """A `Responder` that notes the status it answered with (for the request's span)."""

    __slots__ = ("_inner", "status")

    def __init__(self, inner: Responder) -> None:
        self._inner = inner
        self.status: int | None = None

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        await self._inner.whole(status, headers, body)

    async def start(self, status: int, headers: Headers) -> None:
        self.status = status
        await self._inner.start(status, headers)

    async def chunk(self, data: bytes) -> None:
        await self._inner.chunk(data)

    async def end(self) -> None:
        await self._inner.end()


class ProxyApp:
    """The ASGI callable behind /invoke, and the forwarding both front ends share."""

    def __init__(
        self,
        registry: SnapshotRegistry,
        recorder: DecisionRecorder,
        client: UpstreamClient,
        signer: DecisionSigner,
        health: ArmHealth,
        limits: BodyLimits,
        slots: ArmSlots,
        watch: WaitWatch,
        budget: BufferBudget,
        mirror: ShadowMirror | None = None,
        sticky: StickyAssignments | None = None,
        tracer: InvokeTracer | None = None,
    ) -> None:
        self.registry = registry
        self.recorder = recorder
        self.client = client
        self.signer = signer
        self.health = health
        self.limits = limits
        self.slots = slots
        # Times the first read of each body (its `run` is one of the service's background tasks).
        self.watch = watch
        self.budget = budget
        self.mirror = mirror
        self.sticky = sticky or StickyAssignments()
        # None unless OpenTelemetry export is configured (bandit/telemetry/tracing.py).
        self.tracer = tracer
        self._too_large = f"request body exceeds the limit of {limits.max_bytes} bytes (BANDIT_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        responder = AsgiResponder(send)
        if scope["type"] != "http":
            await error_answer(responder, 404, "only HTTP requests are proxied")
            return
        client = scope.get("client")
        await self.forward(
            responder,
            scope["method"],
            scope.get("raw_path") or scope["path"].encode(),
            scope.get("query_string", b""),
            request_headers(scope["headers"], client[0] if client else None, scope.get("scheme", "http")),
            receive,
        )

    async def forward(
        self,
        responder: Responder,
        method: str,
        raw_path: bytes,
        query: bytes,
        incoming: IncomingRequest,
        receive: Receive,
        read_whole: bool = False,
    ) -> None:
        """Route one request: its path and headers checked, its body read, an arm chosen and tried
        (`read_whole`: see `read_request_body`), inside its span when tracing is on."""
        try:
            name, rest = parse_invoke_path(raw_path)
            target = upstream_target(rest, query)
        except BadTarget as error:
            await error_answer(responder, 400, str(error))
            return
        tracer = self.tracer
        if tracer is None:
            await self._route(responder, method, name, target, incoming, incoming.forwarded, receive, read_whole, None)
            return
        # Every answer to an invoke of `name` is in its span, refusals (404, 408, 413...) included.
        span, forwarded = tracer.start(method, incoming.forwarded)
        seen = _StatusSeen(responder)
        try:
            await self._route(seen, method, name, target, incoming, forwarded, receive, read_whole, span)
        finally:
            tracer.finish(span, seen.status)

    async def _route(
        self,
        responder: Responder,
        method: str,
        name: str,
        target: str,
        incoming: IncomingRequest,
        headers: Headers,
        receive: Receive,
        read_whole: bool,
        span: Span | None,
    ) -> None:
        if incoming.unsendable is not None:
            detail = (
                f"header {incoming.unsendable.decode('latin-1')!r} holds bytes outside ASCII, which are not forwarded"
            )
            await error_answer(responder, 400, detail)
            return
        snapshot = self.registry.get(name) or await self.registry.load(name)
        if snapshot is None:
            await error_answer(responder, 404, f"experiment {name!r} does not exist")
            return
        if span is not None:
            InvokeTracer.routed(span, name)
        raw_length = incoming.content_length
        declared = int(raw_length) if raw_length is not None and raw_length.isdigit() else None
        if declared is not None and declared > self.limits.max_bytes:
            await error_answer(responder, 413, self._too_large)
            return
        try:
            body = await read_request_body(receive, self.limits, declared, self.watch, self.budget, read_whole)
        except (BodyTooLarge, BodyTimeout) as fault:
            await self._client_fault(responder, fault)
            return
        except ClientDisconnected:
            return
        if isinstance(body, StreamedBody) and raw_length is not None:
            # Streamed on with the length the client declared, so the upstream needs no chunked decoding.
            headers = [*headers, (b"content-length", raw_length)]
        try:
            await self._try_arms(responder, method, snapshot, incoming.unit, target, headers, body, span)
        finally:
            self.budget.release(body)

    async def _client_fault(self, responder: Responder, fault: BodyTooLarge | BodyTimeout) -> None:
        """413 or 408 for a body the client sent too much or too slowly of. After a 408 the
        connection is closed: waiting for the rest of a slow body is what the timeout ends."""
        if isinstance(fault, BodyTooLarge):
            await error_answer(responder, 413, self._too_large)
        else:
            await error_answer(responder, 408, str(fault), connection="close")

    async def _try_arms(
        self,
        responder: Responder,
        method: str,
        snapshot: Snapshot,
        unit: bytes | None,
        target: str,
        headers: Headers,
        body: bytes | StreamedBody,
        span: Span | None,
    ) -> None:
        experiment = snapshot.experiment
        name = experiment.name
        is_healthy = self.health.is_healthy
        slots = self.slots
        streamed = isinstance(body, StreamedBody)
        index = self._choose(snapshot, unit)
        self.recorder.assigned(snapshot)
        response: UpstreamResponse | None = None
        for attempt in (1, 2):
            key = snapshot.health_keys[index]
            if not slots.free(key, streamed):
                # This arm has all the requests it may have: another arm that has room serves, or none.
                roomy = snapshot.choose_other(index, lambda other: is_healthy(other) and slots.free(other, streamed))
                if roomy is None:
                    arm = snapshot.routes[index]
                    detail = f"arm {arm.name!r} has {slots.refusal(key, streamed)}; retry shortly"
                    await error_answer(responder, 503, detail, arm=arm.name, experiment=name, retry_after="1")
                    return
                index, key = roomy, snapshot.health_keys[roomy]
            arm = snapshot.routes[index]
            if span is not None:
                span.set_attribute("mab.arm", arm.name)  # the arm tried (a retry names the second)
            started = time.perf_counter()
            self.health.sending(key)
            slots.take(key, streamed)
            try:
                response = await self.client.send(method, arm.origin, target, headers, body, arm.timeouts)
            except UpstreamError as error:
                slots.release(key, streamed)
                fault = self._upload_fault(body, error)
                if fault is not None:
                    # The client's upload failed, not the arm: nothing counts against it.
                    self.health.abandon(key)
                    if not isinstance(fault, ClientDisconnected):
                        await self._client_fault(responder, fault)
                    return
                self.recorder.record(name, experiment.incarnation, arm.name, None, error.kind)
                self.health.observe(key, failed=True, connection_failed=error.retryable)
                if span is not None:
                    InvokeTracer.attempt_failed(span, arm.name, error.kind)
                log.warning(
                    "arm %s of %s failed: %s: %s",
                    arm.name,
                    name,
                    type(error).__name__,
                    error,
                    extra={"experiment": name, "arm": arm.name},
                )
                # Nothing reached the upstream and the body can be sent again: one more try elsewhere.
                replayable = not (isinstance(body, StreamedBody) and body.started)
                alternative = snapshot.choose_other(index, is_healthy)
                if attempt == 1 and error.retryable and replayable and alternative is not None:
                    retried_on = snapshot.routes[alternative].name
                    log.info(
                        "request to %s retried on arm %s",
                        name,
                        retried_on,
                        extra={"experiment": name, "arm": retried_on},
                    )
                    index = alternative
                    continue
                if span is not None:
                    InvokeTracer.failed(span, error.kind)
                await error_answer(
                    responder, error.status_code, f"arm {arm.name!r}: {error.message}", arm=arm.name, experiment=name
                )
                return
            except BaseException:  # cancelled while waiting: the slot and any trial are given back
                slots.release(key, streamed)
                self.health.abandon(key)
                raise
            break
        assert response is not None
        try:
            arm = snapshot.routes[index]
            # Time to the upstream's response headers: what a latency penalty charges the arm for.
            latency_us = int((time.perf_counter() - started) * 1e6)
            decision = self.signer.sign(name, arm.name, experiment.incarnation, latency_us=latency_us)
            if span is not None:
                span.set_attribute("mab.decision", decision)
            if snapshot.shadows and isinstance(body, bytes):
                self._mirror(snapshot, method, target, headers, body)
            await self._relay(responder, response, snapshot, arm, key, decision, started, span, unit)
        finally:
            slots.release(key, streamed)

    @staticmethod
    def _upload_fault(body: bytes | StreamedBody, error: UpstreamError) -> UploadFault | None:
        """The client's part in a failed send: its upload's own fault, or a read timeout that ran
        out while its body was still coming (the arm cannot answer what it has not received)."""
        if not isinstance(body, StreamedBody):
            return None
        if body.fault is None and isinstance(error, UpstreamTimeout) and not body.complete:
            return BodyTimeout("the request body had not arrived in full when the arm's read timeout ran out")
        return body.fault

    async def _relay(
        self,
        responder: Responder,
        response: UpstreamResponse,
        snapshot: Snapshot,
        arm: ArmRoute,
        key: HealthKey,
        decision: str,
        started: float,
        span: Span | None,
        unit: bytes | None = None,
    ) -> None:
        """Stream the upstream's answer back with the bandit headers, then count it (and log it).

        A body of declared length that arrives in its first chunk (the usual small answer of
        a model) goes out with the headers in one write; anything else streams as it comes,
        headers first.
        """
        experiment = snapshot.experiment
        propensity = snapshot.propensity(arm)
        answer = response_headers(response.headers)
        out_headers = answer.headers
        out_headers += (
            (b"x-bandit-experiment", snapshot.header_value),
            (b"x-bandit-arm", arm.header_value),
            (b"x-bandit-decision", decision.encode()),
            (b"x-bandit-propensity", propensity[1]),
        )
        failure = HTTP_5XX if response.status >= 500 else None
        chunks = response.body()
        length = answer.content_length
        answering = False
        try:
            # Headers go out at once unless a length is declared: then the first chunk (all of a
            # small answer) is awaited, so headers and body can leave in one write.
            first = await anext(chunks, b"") if length else b""
            # One more read sees the body end: some clients (httpx) return the connection only then.
            rest = await anext(chunks, None) if length is not None and len(first) == length else b""
            answering = True
            if rest is None:
                await responder.whole(response.status, out_headers, first)
            else:
                await responder.start(response.status, out_headers)
                for chunk in (first, rest):
                    if chunk:
                        await self._write(responder, chunk)
                async for chunk in chunks:
                    await self._write(responder, chunk)
                await responder.end()
        except UpstreamError as error:
            failure = error.kind
            log.warning(
                "arm %s of %s broke off its response: %s",
                arm.name,
                experiment.name,
                error,
                extra={"experiment": experiment.name, "arm": arm.name},
            )
            if not answering:
                # Nothing sent yet: the client gets the failure as an answer of its own.
                detail = f"arm {arm.name!r}: {error.message}"
                await error_answer(responder, error.status_code, detail, arm=arm.name, experiment=experiment.name)
            # Else the headers are gone already: all that is left is to cut the response short.
        except ClientDisconnected:
            # The client left mid-answer: nothing to send it; the arm answered, so it is no failure.
            pass
        finally:
            await response.close()
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.recorder.record(experiment.name, experiment.incarnation, arm.name, latency_ms, failure)
            logged = experiment.log
            if logged is not None and failure is None and sampled(decision, logged.sample):
                entry = LoggedDecision(
                    decision, int(time.time() * 1000), arm.name, propensity[0], experiment.version, _unit_text(unit)
                )
                self.recorder.log_decision(logged, experiment.name, entry)
            self.health.observe(key, failed=failure is not None)
            if span is not None and failure is not None:
                InvokeTracer.failed(span, failure)  # a 5xx, or an answer broken off after its headers

    async def _write(self, responder: Responder, chunk: bytes) -> None:
        """One chunk of a streamed answer. A client that stops reading for longer than the body
        idle timeout is taken as gone: it would hold the upstream's connection and its arm's slot."""
        deadline = asyncio.get_running_loop().time() + self.limits.idle_s
        try:
            await self.watch.wait(lambda: responder.chunk(chunk), deadline)
        except WaitTimedOut:
            raise ClientDisconnected("the client stopped reading the answer") from None

    def _choose(self, snapshot: Snapshot, unit: bytes | None) -> int:
        is_healthy = self.health.is_healthy
        if not unit or snapshot.policy is None:
            return snapshot.choose_healthy(is_healthy)
        # A unit keeps the arm it was first given (for the TTL) while that arm serves and is healthy;
        # a new unit hashes onto the allocation, so every replica gives it the same arm.
        # Remembered by digest: a unit id of any length costs the map the same few bytes.
        digest = snapshot.unit_digest(unit)
        remembered = self.sticky.get(digest)
        index = snapshot.serving_index(remembered) if remembered is not None else None
        if index is None:
            index = snapshot.choose_for_unit(digest)
            self.sticky.remember(digest, snapshot.routes[index].name)
        if is_healthy(snapshot.health_keys[index]):
            return index
        other = snapshot.choose_other(index, is_healthy)
        return index if other is None else other

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


#: Longest unit id the decision log keeps as given; a longer one is kept as its digest.
MAX_LOGGED_UNIT = 128


def _unit_text(unit: bytes | None) -> str | None:
    """The X-Bandit-Unit as the decision log keeps it: as sent if short, else a digest of it."""
    if not unit:
        return None
    if len(unit) <= MAX_LOGGED_UNIT:
        return unit.decode("latin-1")
    return "blake2b:" + hashlib.blake2b(unit, digest_size=16).hexdigest()


async def error_answer(
    responder: Responder,
    status: int,
    detail: str,
    *,
    connection: str | None = None,
    retry_after: str | None = None,
    **bandit_headers: str,
) -> None:
    """A JSON error in the same shape as the rest of the API, with X-Bandit-`bandit_headers`."""
    body = _encode({"status_code": status, "detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if connection is not None:
        headers.append((b"connection", connection.encode()))
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    headers += [(f"x-bandit-{key}".encode(), value.encode()) for key, value in bandit_headers.items()]
    await responder.whole(status, headers, body)
