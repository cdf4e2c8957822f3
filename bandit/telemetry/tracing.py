"""OpenTelemetry spans of proxied requests: off unless OpenTelemetry's own settings ask for export.

On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, unless
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; spans go over OTLP/HTTP (protobuf), with
the exporter, batching and resource (`OTEL_SERVICE_NAME`, default "mab") read from the usual
`OTEL_*` variables by the SDK itself. The packages are the `otel` extra
(`pip install 'mab-service[otel]'`); without them a configured endpoint is logged and ignored.

Off, nothing here is imported and the proxy pays one `is None` test per request. On, each
/invoke gets a SERVER span, a child of the caller's `traceparent`, named `invoke <experiment>`
(`invoke` for an experiment that does not exist), with the experiment, arm and decision id as
attributes and an event per arm that failed the request; the upstream is sent the same trace with
this span as parent (`tracestate` and `baggage` pass as they came).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("mab.tracing")
Headers = list[tuple[bytes, bytes]]
#: What the W3C Trace Context propagator reads and writes.
_TRACE_HEADERS = (b"traceparent", b"tracestate")


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry's settings ask for spans to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class InvokeTracer:
    """Starts and ends the span of each proxied request (built only when tracing is on)."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._provider = provider
        self._propagator = TraceContextTextMapPropagator()

    def start(self, method: str, headers: Headers) -> tuple[Span, Headers]:
        """The request's span, and the headers to forward: the caller's trace, this span as parent.
        It is named `invoke` until `routed` names the experiment: a name a client sent is not put
        in a span's name before it was found to be an experiment (span names must stay few)."""
        from opentelemetry import trace

        incoming = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in _TRACE_HEADERS
        }
        parent = self._propagator.extract(incoming)
        span = self._tracer.start_span(
            "invoke", context=parent, kind=trace.SpanKind.SERVER, attributes={"http.request.method": method}
        )
        outgoing: dict[str, str] = {}
        self._propagator.inject(outgoing, context=trace.set_span_in_context(span))
        forwarded = [(name, value) for name, value in headers if name not in _TRACE_HEADERS]
        forwarded += [(name.encode(), value.encode()) for name, value in outgoing.items()]
        return span, forwarded

    @staticmethod
    def routed(span: Span, experiment: str) -> None:
        """The request is for this experiment, which exists."""
        span.update_name(f"invoke {experiment}")
        span.set_attribute("mab.experiment", experiment)

    @staticmethod
    def attempt_failed(span: Span, arm: str, kind: str) -> None:
        """An arm tried failed the request: an event, so each attempt of a retried request shows."""
        span.add_event("arm failed", {"mab.arm": arm, "mab.failure": kind})

    @staticmethod
    def failed(span: Span, kind: str) -> None:
        """The arm failed the request (`kind`: bandit.telemetry.metrics.ERROR_KINDS), whatever status
        the client got: an answer broken off after its headers went out as a 200."""
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("mab.failure", kind)
        span.set_status(Status(StatusCode.ERROR, kind))

    @staticmethod
    def finish(span: Span, status: int | None) -> None:
        """End the span with the status answered (None: the client left before any answer)."""
        from opentelemetry.trace import Status, StatusCode

        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        span.end()

    def shutdown(self) -> None:
        """Export what is still batched (at the end of the process)."""
        if self._provider is not None:
            self._provider.shutdown()


def tracer_from_environment(environ: Mapping[str, str] | None = None) -> InvokeTracer | None:
    """The tracer OpenTelemetry's settings ask for, or None (tracing off)."""
    environ = os.environ if environ is None else environ
    if not tracing_wanted(environ):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: spans go over http/protobuf", protocol)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("an OTLP endpoint is set but OpenTelemetry is not installed (pip install 'mab-service[otel]')")
        return None
    # The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; attributes given here would win.
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    attributes: dict[str, Any] = {} if named else {"service.name": "mab"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("tracing /invoke with OpenTelemetry, exported over OTLP/HTTP")
    return InvokeTracer(provider.get_tracer("mab.proxy"), provider)
