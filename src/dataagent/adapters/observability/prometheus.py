"""The Telemetry port on prometheus-client: the metrics of docs/OPERATIONS.md and their exposition.

One process: the metrics live in this object's registry. Several workers (`--workers N`): the CLI sets
PROMETHEUS_MULTIPROC_DIR before any worker starts, each worker writes its values to files there, and a scrape of
any worker reads them all (prometheus-client's multiprocess mode), so the exposition adds every process.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from dataagent.application.telemetry import Telemetry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "dataagent_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
ROW_BUCKETS = (0, 1, 10, 100, 1000, 10_000, 100_000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# statement types as labels; any other (a command's first word comes from the statement) is `other`
SQL_TYPES = frozenset({
    "select", "insert", "update", "delete", "merge", "replace", "create", "drop", "alter", "truncate", "explain",
    "show", "describe", "with", "union", "set", "use", "call", "grant", "revoke", "unknown",
})


def multiprocess_dir() -> str | None:
    """The directory of the workers' metric files, when several processes serve (set by the CLI)."""
    return os.environ.get(MULTIPROC_ENV) or None


class PrometheusTelemetry(Telemetry):
    """Counters, gauges and histograms named `dataagent_*`, with bounded labels (never an id or a key)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._started = Counter(PREFIX + "answers_started_total", "Answers started", registry=r)
        self._ended = Counter(PREFIX + "answers_ended_total", "Answers ended, by status and reason",
                              ["status", "reason"], registry=r)
        self._active = Gauge(PREFIX + "active_runs", "Answers running now", registry=r, multiprocess_mode="livesum")
        self._duration = Histogram(PREFIX + "answer_duration_seconds", "From an answer's start to its end",
                                   ["status"], buckets=ANSWER_BUCKETS, registry=r)
        self._first_token = Histogram(PREFIX + "time_to_first_token_seconds", "From an answer's start to its "
                                      "first text delta", buckets=ANSWER_BUCKETS, registry=r)
        self._cancel = Histogram(PREFIX + "cancel_to_done_seconds", "From a cancel reaching the run's process to "
                                 "its done", buckets=LATENCY_BUCKETS, registry=r)
        self._approval = Histogram(PREFIX + "approval_wait_seconds", "From an approval request to its decision",
                                   ["decision"], buckets=WAIT_BUCKETS, registry=r)
        self._queue = Histogram(PREFIX + "queue_wait_seconds", "A queued question's wait before its run started",
                                buckets=WAIT_BUCKETS, registry=r)
        self._sql = Counter(PREFIX + "sql_statements_total", "run_sql calls, by statement type and outcome",
                            ["type", "outcome"], registry=r)
        self._sql_duration = Histogram(PREFIX + "sql_duration_seconds", "Time a statement ran in the database",
                                       ["type"], buckets=LATENCY_BUCKETS, registry=r)
        self._sql_rows = Histogram(PREFIX + "sql_rows", "Rows a statement returned", ["type"],
                                   buckets=ROW_BUCKETS, registry=r)
        self._llm = Counter(PREFIX + "llm_calls_total", "LLM completions, by outcome", ["outcome"], registry=r)
        self._llm_duration = Histogram(PREFIX + "llm_call_duration_seconds", "An LLM completion, retries included",
                                       buckets=ANSWER_BUCKETS, registry=r)
        self._llm_retries = Counter(PREFIX + "llm_retries_total", "Transient LLM failures retried", registry=r)
        self._tokens = Counter(PREFIX + "llm_tokens_total", "Tokens the LLM reported, by kind", ["kind"], registry=r)
        self._opened = Counter(PREFIX + "connections_opened_total", "Streams opened, by transport (ws, sse)",
                               ["transport"], registry=r)
        self._open = Gauge(PREFIX + "connections_active", "Streams open now, by transport", ["transport"],
                           registry=r, multiprocess_mode="livesum")
        self._frames = Counter(PREFIX + "frames_sent_total", "Events written to clients, by transport",
                               ["transport"], registry=r)
        self._slow = Counter(PREFIX + "slow_consumer_closes_total", "Clients dropped for reading too slowly",
                             ["transport"], registry=r)
        self._store = Histogram(PREFIX + "store_call_duration_seconds", "Session store calls, by operation",
                                ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self._store_errors = Counter(PREFIX + "store_errors_total", "Session store calls that raised",
                                     ["operation"], registry=r)
        self._broker = Histogram(PREFIX + "broker_call_duration_seconds", "Event transport calls, by operation",
                                 ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self._broker_errors = Counter(PREFIX + "broker_errors_total", "Event transport calls that raised",
                                      ["operation"], registry=r)
        self._batches = Histogram(PREFIX + "group_commit_batch_size", "Appends per MySQL group commit",
                                  buckets=BATCH_BUCKETS, registry=r)
        self._limited = Counter(PREFIX + "rate_limited_total", "Requests refused as rate_limited, by transport",
                                ["transport"], registry=r)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (of every worker in multiprocess mode) and its content type."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This worker stops: its live gauges leave the sum of the others."""
        directory = multiprocess_dir()
        if directory is not None:
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    def run_started(self) -> None:
        self._started.inc()
        self._active.inc()

    def run_ended(self, status: str, reason: str | None, duration_s: float) -> None:
        self._ended.labels(status, reason or "").inc()
        self._active.dec()
        self._duration.labels(status).observe(duration_s)

    def first_token(self, seconds: float) -> None:
        self._first_token.observe(seconds)

    def cancel_done(self, seconds: float) -> None:
        self._cancel.observe(seconds)

    def approval_waited(self, seconds: float, decision: str) -> None:
        self._approval.labels(decision).observe(seconds)

    def queue_waited(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def sql_statement(self, statement_type: str, outcome: str, duration_s: float, rows: int) -> None:
        kind = statement_type.lower()
        kind = kind if kind in SQL_TYPES else "other"
        self._sql.labels(kind, outcome).inc()
        if outcome in ("ran", "failed"):
            self._sql_duration.labels(kind).observe(duration_s)
        if outcome == "ran":
            self._sql_rows.labels(kind).observe(rows)

    def llm_call(self, outcome: str, duration_s: float) -> None:
        self._llm.labels(outcome).inc()
        self._llm_duration.observe(duration_s)

    def llm_retry(self) -> None:
        self._llm_retries.inc()

    def llm_tokens(self, prompt: int, completion: int) -> None:
        self._tokens.labels("prompt").inc(prompt)
        self._tokens.labels("completion").inc(completion)

    def connection_opened(self, transport: str) -> None:
        self._opened.labels(transport).inc()
        self._open.labels(transport).inc()

    def connection_closed(self, transport: str) -> None:
        self._open.labels(transport).dec()

    def frames_sent(self, transport: str, count: int) -> None:
        self._frames.labels(transport).inc(count)

    def slow_consumer(self, transport: str) -> None:
        self._slow.labels(transport).inc()

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        self._store.labels(operation).observe(seconds)
        if failed:
            self._store_errors.labels(operation).inc()

    def broker_call(self, operation: str, seconds: float, failed: bool) -> None:
        self._broker.labels(operation).observe(seconds)
        if failed:
            self._broker_errors.labels(operation).inc()

    def commit_batch(self, size: int) -> None:
        self._batches.observe(size)

    def rate_limited(self, transport: str) -> None:
        self._limited.labels(transport).inc()
