"""Observability adapters: Prometheus metrics (prometheus.py), timed store and broker calls (timed.py) and
OpenTelemetry tracing (tracing.py, with the `otel` extra)."""
