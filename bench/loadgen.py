"""Load generator for DataAgent Server and the bare baseline (both speak PROTOCOL.md's frames).

C users each open a WebSocket on their own session and ask Q questions one after another, reading each
answer to its `done`; with `--transport sse` each question is a POST /api/v1/chat/stream read to its `done`
(one HTTP/1.1 connection per user, kept alive). Prints one JSON line of metrics (see docs/PERFORMANCE.md).
Loopback targets only.

    python bench/loadgen.py --url http://127.0.0.1:8100 --api-key benchkey -c 100 -q 3 --tokens 200 \
        --delay-ms 10 --server-pid 1234 [--scenario stream|cancel|idle] [--compression deflate|none] \
        [--transport ws|sse]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import websockets

now = time.perf_counter
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TLS = ssl.create_default_context()  # one for every client: building one per client costs ~10 ms of CPU


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))], 2)


def stats(values: list[float]) -> dict[str, Any]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)}


class ServerSampler:
    """Samples CPU seconds and RSS of a process and its children from /proc every 0.2 s."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self._task: asyncio.Task[None] | None = None
        self.cpu_start = self.cpu_end = 0.0

    def _pids(self) -> list[int]:
        assert self.pid is not None
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
        return found

    def read(self) -> tuple[float, int]:
        cpu, rss = 0.0, 0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                cpu += (int(parts[11]) + int(parts[12])) / TICK
                rss += int(parts[21]) * PAGE_KB
            except (OSError, IndexError, ValueError):
                pass
        return cpu, rss

    async def _run(self) -> None:
        while True:
            self.peak_rss_kb = max(self.peak_rss_kb, self.read()[1])
            await asyncio.sleep(0.2)

    def start(self) -> None:
        if self.pid:
            self.cpu_start = self.read()[0]
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self.cpu_end, rss = self.read()
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self._task.cancel()


@dataclass
class Results:
    ttfc: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cancel_to_done: list[float] = field(default_factory=list)
    chunks_after_cancel: list[int] = field(default_factory=list)
    partial_kept: int = 0
    partial_checked: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


Outcome = tuple[float, float | None, str, list[str]]  # (sent time, first chunk time, status, texts)


@dataclass
class Answer:
    """One answer's frames as they arrive, over any transport: the first chunk's time, the texts, the status."""

    results: Results
    sent: float = field(default_factory=now)
    first: float | None = None
    texts: list[str] = field(default_factory=list)

    def take(self, frame: dict[str, Any]) -> str | None:
        """Note one frame; the status if it is the `done`."""
        kind = frame["event_type"]
        if kind == "text":
            if self.first is None:
                self.first = now()
            self.texts.append(frame["data"]["content"])
        elif kind == "done":
            return str(frame["data"]["status"])
        elif kind == "error" and not frame["data"].get("recoverable", True):
            self.results.error("event:error")
        return None

    def outcome(self, status: str) -> Outcome:
        return self.sent, self.first, status, self.texts


class User:
    def __init__(self, args: argparse.Namespace, results: Results, index: int) -> None:
        self.args = args
        self.results = results
        self.session_id = f"bench-{index}-{uuid.uuid4().hex[:8]}"
        base = args.url.rstrip("/")
        query = f"?api_key={args.api_key}" if args.api_key else ""
        self.ws_url = "ws" + base.removeprefix("http") + f"/ws/chat/{self.session_id}{query}"

    def connect(self) -> Any:
        return websockets.connect(
            self.ws_url, compression="deflate" if self.args.compression == "deflate" else None,
            max_size=None, ping_interval=None, open_timeout=60, max_queue=None,
        )

    async def ask(self, ws: Any, question: str) -> Outcome:
        """Send one question; read to `done`. Returns (sent time, first chunk time, status, texts)."""
        answer = Answer(self.results)
        await ws.send(orjson.dumps({"type": "chat", "payload": {"message": question}}).decode())
        while True:
            frame = orjson.loads(await ws.recv())
            if frame["event_type"] == "error" and "seq" not in frame:  # refused: no run, no `done`
                return answer.outcome(f"refused:{frame['data'].get('error_code')}")
            if (status := answer.take(frame)) is not None:
                return answer.outcome(status)

    async def ask_sse(self, http: httpx.AsyncClient, question: str) -> Outcome:
        """POST the question to /chat/stream; read its `data:` lines to `done`. Returns as `ask` does."""
        answer = Answer(self.results)
        body = {"message": question, "session_id": self.session_id}
        async with http.stream("POST", "/api/v1/chat/stream", json=body) as response:
            if response.status_code != 200:
                return answer.outcome(f"refused:{response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("data: ") and (status := answer.take(orjson.loads(line[6:]))) is not None:
                    return answer.outcome(status)
        return answer.outcome("cut")

    async def ask_sse_raw(self, conn: list[Any], question: str) -> Outcome:
        """As `ask_sse`, over one kept-alive plain socket per user, parsing the chunked `text/event-stream` by
        hand: httpx's line reader cost the load generator three times what `websockets` does, so the SSE row
        measured the client rather than the server."""
        if not conn:
            url = httpx.URL(self.args.url)
            conn.extend(await asyncio.open_connection(url.host, url.port or 80, limit=2**20))
        reader, writer = conn
        answer = Answer(self.results)
        body = orjson.dumps({"message": question, "session_id": self.session_id})
        key = f"X-API-Key: {self.args.api_key}\r\n" if self.args.api_key else ""
        writer.write(f"POST /api/v1/chat/stream HTTP/1.1\r\nHost: bench\r\n{key}Content-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status_code = int(head.split(b" ", 2)[1])
        if status_code != 200 or b"chunked" not in head.lower():
            conn.clear()
            writer.close()
            return answer.outcome(f"refused:{status_code}")
        pending, status = b"", "cut"
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:  # the stream's end, read after its `done`: the socket is reused
                return answer.outcome(status)
            pending += chunk[:-2]
            *events, pending = pending.split(b"\n\n")
            for line in (line for event in events for line in event.split(b"\n")):
                if line.startswith(b"data: "):
                    status = answer.take(orjson.loads(line[6:])) or status

    @asynccontextmanager
    async def asker(self) -> AsyncIterator[Callable[[str], Awaitable[Outcome]]]:
        """One user's channel for its questions: a WebSocket, or an HTTP client for SSE."""
        if self.args.transport == "sse" and self.args.url.startswith("http://"):
            conn: list[Any] = []
            try:
                yield partial(self.ask_sse_raw, conn)
            finally:
                if conn:
                    conn[1].close()
            return
        if self.args.transport == "sse":
            headers = {"X-API-Key": self.args.api_key} if self.args.api_key else {}
            async with httpx.AsyncClient(base_url=self.args.url, headers=headers, timeout=self.args.timeout,
                                         verify=TLS) as http:
                yield partial(self.ask_sse, http)
            return
        async with self.connect() as ws:
            await ws.recv()  # connected
            yield partial(self.ask, ws)

    async def stream(self) -> None:
        a, r = self.args, self.results
        try:
            async with self.asker() as ask:
                for q in range(a.questions):
                    sent, first, status, texts = await asyncio.wait_for(ask(f"question {q}"), a.timeout)
                    chunks = sum(1 for t in texts if t)
                    if status != "completed" or chunks < a.tokens:
                        r.error("incomplete" if status == "completed" else f"status:{status}")
                        continue
                    end = now()
                    r.ttfc.append((first - sent) * 1000 - a.delay_ms)  # type: ignore[operator]
                    r.latency.append((end - sent) * 1000 - a.tokens * a.delay_ms)
                    r.completions.append(end)
        except TimeoutError:
            r.error("timeout")
        except (OSError, asyncio.IncompleteReadError, websockets.WebSocketException, httpx.HTTPError) as exc:
            r.error(f"dropped:{type(exc).__name__}")

    async def cancel(self, http: httpx.AsyncClient) -> None:
        """One long question; cancel over REST `cancel_after_ms` after the first chunk; check the partial answer."""
        a, r = self.args, self.results
        cancel_at: list[float] = []

        async def cancel_later() -> None:
            await asyncio.sleep(a.cancel_after_ms / 1000)
            cancel_at.append(now())
            resp = await http.post(f"/api/v1/chat/{self.session_id}/cancel")
            if resp.status_code != 200:
                r.error(f"cancel:{resp.status_code}")

        canceller: asyncio.Task[None] | None = None
        try:
            async with self.connect() as ws:
                await ws.recv()
                await ws.send(orjson.dumps({"type": "chat", "payload": {"message": "a long one"}}).decode())
                texts: list[str] = []
                after = 0
                async with asyncio.timeout(a.timeout):
                    while True:
                        frame = orjson.loads(await ws.recv())
                        if frame["event_type"] == "text":
                            if canceller is None:
                                canceller = asyncio.create_task(cancel_later())
                            texts.append(frame["data"]["content"])
                            after += bool(cancel_at)
                        elif frame["event_type"] == "done":
                            ended = now()
                            break
                if not cancel_at or frame["data"]["status"] != "cancelled":
                    r.error("ran_to_completion")
                    return
                r.cancel_to_done.append((ended - cancel_at[0]) * 1000)
                r.chunks_after_cancel.append(after)
                await canceller  # type: ignore[misc]
            history = (await http.get(f"/api/v1/sessions/{self.session_id}/messages")).json()["messages"]
            r.partial_checked += 1
            last = history[-1]
            if last["role"] == "assistant" and last["status"] == "cancelled" and last["content"] == "".join(texts):
                r.partial_kept += 1
        except TimeoutError:
            r.error("timeout")
        except (OSError, websockets.WebSocketException, httpx.HTTPError) as exc:
            r.error(f"dropped:{type(exc).__name__}")


async def run_stream(args: argparse.Namespace, results: Results) -> None:
    async def one(i: int) -> None:
        await asyncio.sleep(args.ramp_s * i / max(1, args.users))
        await User(args, results, i).stream()

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.users))), args.max_duration)


async def run_cancel(args: argparse.Namespace, results: Results) -> None:
    headers = {"X-API-Key": args.api_key} if args.api_key else {}

    async def one(i: int) -> None:
        await asyncio.sleep(args.ramp_s * i / max(1, args.users))
        async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=30, verify=TLS) as http:
            await User(args, results, i).cancel(http)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.users))), args.max_duration)


async def run_idle(args: argparse.Namespace, sampler: ServerSampler) -> dict[str, Any]:
    """Open `users` idle sockets; the server's RSS growth per socket."""
    await asyncio.sleep(1.0)
    before = sampler.read()[1]
    stack = []
    for i in range(args.users):
        cm = User(args, Results(), i).connect()
        ws = await cm.__aenter__()
        await ws.recv()
        stack.append(cm)
    await asyncio.sleep(2.0)
    after = sampler.read()[1]
    for cm in stack:
        await cm.__aexit__(None, None, None)
    return {"rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
            "rss_per_idle_connection_kb": round((after - before) / max(1, args.users), 1)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback targets only")
    results = Results()
    sampler = ServerSampler(args.server_pid)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.start()
    started = now()
    extra: dict[str, Any] = {}
    try:
        if args.scenario == "stream":
            await run_stream(args, results)
        elif args.scenario == "cancel":
            await run_cancel(args, results)
        else:
            extra = await run_idle(args, sampler)
    except TimeoutError:
        results.error("run_cap")
    wall = now() - started
    await sampler.stop()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    span = (max(results.completions) - started) if results.completions else wall
    out: dict[str, Any] = {
        "label": args.label, "scenario": args.scenario, "transport": args.transport, "users": args.users,
        "questions": args.questions,
        "tokens": args.tokens, "delay_ms": args.delay_ms, "compression": args.compression,
        "answers": len(results.completions), "answers_per_s": round(len(results.completions) / span, 2),
        "ttfc_overhead_ms": stats(results.ttfc), "latency_overhead_ms": stats(results.latency),
        "errors": results.errors, "failures": sum(results.errors.values()),
        "server_rss_peak_mb": round(sampler.peak_rss_kb / 1024, 1),
        "server_cpu_util": round((sampler.cpu_end - sampler.cpu_start) / wall, 3) if args.server_pid else None,
        "client_cpu_util": round(client_cpu / wall, 3), "wall_s": round(wall, 2),
    }
    if args.scenario == "cancel":
        out.update({
            "cancel_to_done_ms": stats(results.cancel_to_done),
            "chunks_after_cancel_max": max(results.chunks_after_cancel, default=None),
            "partial_kept": f"{results.partial_kept}/{results.partial_checked}",
        })
    out.update(extra)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8100")
    p.add_argument("--api-key", default=None)
    p.add_argument("-c", "--users", type=int, default=100)
    p.add_argument("-q", "--questions", type=int, default=3)
    p.add_argument("--tokens", type=int, default=200, help="T: chunks the server streams per answer")
    p.add_argument("--delay-ms", type=float, default=0.0, help="D: the server's delay before each chunk")
    p.add_argument("--ramp-s", type=float, default=0.0)
    p.add_argument("--compression", choices=["deflate", "none"], default="deflate",
                   help="offer permessage-deflate, as browsers do (default)")
    p.add_argument("--scenario", choices=["stream", "cancel", "idle"], default="stream")
    p.add_argument("--transport", choices=["ws", "sse"], default="ws",
                   help="stream scenario: WebSocket frames, or server-sent events of POST /chat/stream")
    p.add_argument("--cancel-after-ms", type=float, default=200.0, help="cancel this long after the first chunk")
    p.add_argument("--timeout", type=float, default=240.0, help="per answer")
    p.add_argument("--max-duration", type=float, default=300.0, help="per run")
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--label", default="")
    p.add_argument("--out", default=None, help="append the JSON line to this file")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main_async(args))
    line = json.dumps(result, ensure_ascii=False)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
