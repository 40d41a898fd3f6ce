"""OpenTelemetry tracing (the `otel` extra: opentelemetry-api and -sdk), configured by the standard OTEL_*
variables: OTEL_TRACES_EXPORTER names the exporters (`console`, or `otlp` with opentelemetry-exporter-otlp
installed), OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES the resource, OTEL_TRACES_SAMPLER the sampling,
OTEL_SDK_DISABLED=true turns it off. Without an exporter nothing is traced, unless a tracer provider was set
globally before start-up (e.g. by `opentelemetry-instrument`). Importing this module needs the extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from dataagent.application.telemetry import NO_TRACING, Attributes, Tracing

log = logging.getLogger("dataagent")

EXPORTERS_GROUP = "opentelemetry_traces_exporter"  # the entry points the SDK's exporters register
SERVICE_NAME = "dataagent-server"


class OtelTracing(Tracing):
    """Spans from `provider` (the global one if None), as children of the current span."""

    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._tracer = (provider or trace.get_tracer_provider()).get_tracer("dataagent")

    @contextlib.contextmanager
    def span(self, name: str, attributes: Attributes, current: bool = True) -> Iterator[object]:
        if current:
            with self._tracer.start_as_current_span(name, attributes=dict(attributes)) as span:
                yield span
            return
        span = self._tracer.start_span(name, attributes=dict(attributes))  # the caller's context is left alone
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def close(self) -> None:
        """Export the spans still buffered (a provider of our own only)."""
        if self._provider is not None:
            self._provider.shutdown()


def tracing_from_environment() -> Tracing:
    """The tracing OTEL_* asks for: a provider with the exporters OTEL_TRACES_EXPORTER names, the global provider
    if one was set, or none."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return NO_TRACING
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip() not in ("", "none")]
    if not names:
        if isinstance(trace.get_tracer_provider(), TracerProvider):  # set up by the embedding program
            return OtelTracing()
        return NO_TRACING
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracing(provider)


def _exporter(name: str) -> SpanExporter | None:
    found = entry_points(group=EXPORTERS_GROUP, name=name)
    if not found:
        log.warning("OTEL_TRACES_EXPORTER=%s: no such exporter installed (e.g. pip install "
                    "opentelemetry-exporter-otlp); its spans are dropped", name)
        return None
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter
