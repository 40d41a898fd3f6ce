"""CPU cost of the run pipeline without the network: engine -> run manager -> broker -> encoded frames.

Runs C concurrent demo answers of T chunks (D=0) through the real core and in-memory adapters, with one
subscriber per session that encodes every event as the WebSocket does (in the publisher's step through the
subscription's direct sink, as the fast path does; `--no-direct`: in the reader task, as the writer does),
and reports CPU microseconds per event (process time, so it is stable on a busy machine). `--profile` prints
the top cProfile entries; `--observed` runs it with Prometheus metrics and OpenTelemetry spans.

    python bench/hotpath.py -c 100 -t 200 [--profile] [--observed]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.http.websocket import encode
from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.observability.timed import timed_store
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.chat import ChatService
from dataagent.application.hub import EventHub
from dataagent.application.runs import RunManager
from dataagent.application.streams import Item
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.domain.events import RunEvent


async def one_user(chat: ChatService, broker: EventHub, i: int, questions: int, direct: bool) -> int:
    sid = f"s{i}"
    sub = await broker.subscribe(sid, None, 10_000)
    events = 0
    if direct:  # the WebSocket fast path: an idle reader's events are encoded in the publisher's step

        def sink(item: Item) -> bool:
            nonlocal events
            if not isinstance(item, RunEvent) or item.event_type == "done":
                return False  # through the queue: `done` wakes the reader below
            encode(item)
            events += 1
            return True

        sub.direct = sink
    for q in range(questions):
        await chat.start("bench", f"question {q}", sid)
        while True:
            batch = await sub.get_batch()
            done = False
            for item in batch:
                if isinstance(item, RunEvent):
                    encode(item)
                    events += 1
                    done = done or item.event_type == "done"
            if done:
                break
    sub.close()
    return events


def observed() -> tuple[Telemetry, Tracing]:
    """What `DATAAGENT_METRICS=true` and OTEL_TRACES_EXPORTER give the server: Prometheus metrics and OpenTelemetry
    spans (kept in memory here)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from dataagent.adapters.observability.prometheus import PrometheusTelemetry
    from dataagent.adapters.observability.tracing import OtelTracing

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return PrometheusTelemetry(), OtelTracing(provider)


async def run(users: int, tokens: int, questions: int, direct: bool = True,
              telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING) -> int:
    repo, broker = timed_store(InMemorySessionRepository(), telemetry, tracing), in_memory_hub()
    clock, ids = SystemClock(), UuidIdGenerator()
    runs = RunManager(repo, broker, DemoEngine(chunks=tokens, delay_ms=0), clock, ids, telemetry=telemetry,
                      tracing=tracing)
    runs.attach()
    chat = ChatService(repo, broker, runs, clock, ids)
    counts = await asyncio.gather(*(one_user(chat, broker, i, questions, direct) for i in range(users)))
    return sum(counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-c", "--users", type=int, default=100)
    p.add_argument("-t", "--tokens", type=int, default=200)
    p.add_argument("-q", "--questions", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--no-direct", action="store_true", help="every event through the reader task (no fast path)")
    p.add_argument("--observed", action="store_true", help="with Prometheus metrics and OpenTelemetry spans")
    args = p.parse_args()
    asyncio.run(run(5, args.tokens, 1))  # warm-up
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    telemetry, tracing = observed() if args.observed else (NO_TELEMETRY, NO_TRACING)
    events = asyncio.run(run(args.users, args.tokens, args.questions, not args.no_direct, telemetry, tracing))
    if profiler:
        profiler.disable()
    cpu = time.process_time() - started
    print(f"{events} events in {cpu:.2f} s CPU: {cpu / events * 1e6:.1f} us per event "
          f"({args.users} users x {args.questions} answers x {args.tokens} chunks)")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
