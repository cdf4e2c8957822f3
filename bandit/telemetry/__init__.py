"""What the service tells its operators about itself while it runs: Prometheus metrics counted by
each process (`metrics.py`) and OpenTelemetry spans of proxied requests (`tracing.py`).

It sits beside :mod:`bandit.store`: the proxy and the API record into it, and it knows neither.
"""

from __future__ import annotations

from bandit.telemetry.metrics import ServiceMetrics
from bandit.telemetry.tracing import InvokeTracer, tracer_from_environment

__all__ = ["InvokeTracer", "ServiceMetrics", "tracer_from_environment"]
