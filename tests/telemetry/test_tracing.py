"""Trace context crosses the proxy; with OpenTelemetry on, each invoke's span reaches a real OTLP/HTTP
receiver on loopback with the experiment, arm and decision."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bandit.cli.local_redis import free_port
from bandit.telemetry.tracing import tracing_wanted
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CONTEXT = {
    "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
    "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    "baggage": "userId=alice,serverNode=DF%2028",
}


def echoed_headers(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 200, answer.text
    return {name: value for name, value in answer.json()["headers"]}


def test_trace_context_reaches_the_upstream_untouched(
    service: ServiceProcess, admin: httpx.Client, models: ModelServers, name: str
) -> None:
    assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
    seen = echoed_headers(httpx.post(f"{service.url}/invoke/{name}/echo", headers=CONTEXT, content=b"{}"))
    assert {key: seen.get(key) for key in CONTEXT} == CONTEXT


class _Receiver(http.server.BaseHTTPRequestHandler):
    """OTLP/HTTP's trace endpoint: keeps every span it is sent."""

    spans: list[Any]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                service_name = next(
                    a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service_name, span) for span in scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    spans: list[Any] = []
    handler = type("Receiver", (_Receiver,), {"spans": spans})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()
    server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = value.int_value if value.HasField("int_value") else value.string_value
    return values


def test_spans_are_exported_with_experiment_arm_and_decision(
    clean_test_db: str, models: ModelServers, receiver: tuple[str, list[Any]], name: str
) -> None:
    endpoint, spans = receiver
    service = ServiceProcess(
        clean_test_db, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="mab-test"
    ).start()
    try:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            assert admin.post("/api/experiments", json=experiment_body(name, models)).status_code == 201
        traced = httpx.post(f"{service.url}/invoke/{name}/echo", headers=CONTEXT, content=b"{}")
        untraced = httpx.post(f"{service.url}/invoke/{name}/status/503", content=b"{}")
        assert untraced.status_code == 503
        unknown = httpx.post(f"{service.url}/invoke/no-such-experiment/predict", content=b"{}")
        assert unknown.status_code == 404
        # Half the traffic first tries an arm whose connections are refused, then goes to the other.
        retried = f"{name}-retried"
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            arms = [
                {"name": "good", "url": models.urls["v1"]},
                {"name": "gone", "url": f"http://127.0.0.1:{free_port()}"},
            ]
            body = {"name": retried, "arms": arms, "policy": {"kind": "static", "weights": [0.5, 0.5]}}
            assert admin.post("/api/experiments", json=body).status_code == 201
        assert all(httpx.post(f"{service.url}/invoke/{retried}/predict").status_code == 200 for _ in range(6))
        wait_until(lambda: len(spans) >= 9, 10, "nine spans exported")
    finally:
        service.stop()

    by_decision = {attributes(span).get("mab.decision"): (service_name, span) for service_name, span in spans}
    service_name, span = by_decision[traced.headers["x-bandit-decision"]]
    assert service_name == "mab-test"
    assert span.name == f"invoke {name}"
    assert span.kind == span.SPAN_KIND_SERVER
    # A child of the caller's span, in the caller's trace.
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_ID
    assert attributes(span) == {
        "mab.experiment": name,
        "mab.arm": traced.headers["x-bandit-arm"],
        "mab.decision": traced.headers["x-bandit-decision"],
        "http.request.method": "POST",
        "http.response.status_code": 200,
    }
    # The upstream was sent the same trace, with the proxy's span as its parent.
    seen = echoed_headers(traced)
    assert seen["traceparent"] == f"00-{TRACE_ID}-{span.span_id.hex()}-01"
    assert seen["tracestate"] == CONTEXT["tracestate"]
    assert seen["baggage"] == CONTEXT["baggage"]
    # A request without trace context starts a trace of its own; an answer of 5xx marks the span failed.
    _, failed = by_decision[untraced.headers["x-bandit-decision"]]
    assert failed.trace_id.hex() != TRACE_ID and not failed.parent_span_id
    assert attributes(failed)["http.response.status_code"] == 503
    assert attributes(failed)["mab.failure"] == "http_5xx"
    assert attributes(failed)["mab.arm"] == untraced.headers["x-bandit-arm"]
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    # A refusal is an invoke too; a name that is no experiment is not put in the span's name.
    _, refused = by_decision[None]
    assert refused.name == "invoke"
    assert attributes(refused) == {"http.request.method": "POST", "http.response.status_code": 404}
    # A request whose first arm refused the connection: the arm that answered, and an event for the other.
    retries = [span for _, span in spans if span.name == f"invoke {retried}" and span.events]
    assert retries, "no request of the retried experiment went to the refusing arm first"
    for span in retries:
        assert attributes(span)["mab.arm"] == "good" and attributes(span)["http.response.status_code"] == 200
        assert [(event.name, attributes(event)) for event in span.events] == [
            ("arm failed", {"mab.arm": "gone", "mab.failure": "connect"})
        ]


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_opentelemetry_is_told_where_to_export(environ: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(environ) is wanted
