"""Hypothesis over WebSocket frames against a real server: random JSON shapes, lone surrogates, deep nesting,
big sizes and wrong types for every payload field. Each frame gets an `error` (recoverable) or proceeds; the
socket stays open (but for the documented 1009 on an oversize frame); every run started ends with one `done`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import websockets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import KEY_A, cli_command, free_port, server_env, spawn, wait_healthy

pytestmark = pytest.mark.integration

MAX_FRAME = 64 * 1024
SQL = "SELECT name FROM products LIMIT 1"  # the demo engine asks for approval first

texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)  # lone surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63) | st.floats() | texts
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
                           max_leaves=12)


DEEP = re.compile(r'"\\u0000deep(\d+)([\[{])\\u0000"')
deep = st.builds(lambda n, kind: f"\x00deep{n}{kind}\x00", st.integers(1, 3000), st.sampled_from("[{"))
big = st.integers(MAX_FRAME - 200, MAX_FRAME + 50).map(lambda n: "x" * n)
anything = st.one_of(json_values, json_values, json_values, deep, deep, big)
decisions = st.fixed_dictionaries({"type": st.sampled_from(["approve", "reject", "edit"]) | anything}, optional={
    "args": st.fixed_dictionaries({"sql": st.just("SELECT 1 AS n") | anything}) | anything,
    "message": texts | anything,
})
payloads = {
    "chat": st.fixed_dictionaries({"message": st.sampled_from(["hi", SQL]) | texts | anything},
                                  optional={"metadata": st.dictionaries(texts, json_values, max_size=3) | anything}),
    "hitl_decision": st.fixed_dictionaries({"decisions": st.lists(decisions, max_size=2) | anything},
                                           optional={"interrupt_id": texts | anything}),
    "cancel": st.fixed_dictionaries({}, optional={"run_id": texts | anything}),
    "resume": st.fixed_dictionaries({"after_seq": st.integers() | anything}),
    "ping": st.fixed_dictionaries({}, optional={"x": anything}),
}
typed = st.one_of(*(st.fixed_dictionaries({"type": st.just(kind), "payload": p}) for kind, p in payloads.items()))
good = st.sampled_from([
    {"type": "chat", "payload": {"message": "hi"}}, {"type": "chat", "payload": {"message": SQL}},
    {"type": "chat", "payload": {"message": "hi \ud800"}}, {"type": "chat", "payload": {"message": SQL}},
    {"type": "hitl_decision", "payload": {"decisions": [{"type": "approve"}]}},
    {"type": "hitl_decision", "payload": {"decisions": [{"type": "edit", "args": {"sql": "SELECT 2 AS n"}}]}},
    {"type": "cancel", "payload": {}}, {"type": "resume", "payload": {"after_seq": 0}},
]) | st.builds(lambda m: {"type": "chat", "payload": {"message": "hi", "metadata": {"m": m}}}, deep | json_values)
shapes = st.one_of(good, good, typed, typed, st.fixed_dictionaries({"type": texts | anything, "payload": anything}),
                   anything)


def wire(frame: Any) -> str:
    """The frame as a client may write it: JSON with `\\udXXX` escapes for surrogates, NaN and Infinity as is,
    and each `deep` marker replaced by a value nested that many levels."""
    return DEEP.sub(_nested, json.dumps(frame))


def _nested(found: re.Match[str]) -> str:
    depth, kind = int(found[1]), found[2]
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


frames = st.lists(shapes.map(wire) | st.text(max_size=30), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def ws_base() -> Iterator[str]:
    port = free_port()
    env = {"DATAAGENT_AGENT": "demo", "DATAAGENT_API_KEYS": f"alice:{KEY_A}", "DATAAGENT_DEMO_CHUNKS": "3",
           "DATAAGENT_DEMO_CHUNK_DELAY_MS": "1", "DATAAGENT_MAX_FRAME_BYTES": str(MAX_FRAME),
           "DATAAGENT_LOG_LEVEL": "error"}
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], server_env(**env), port)
    try:
        wait_healthy(server)
        yield server.ws_url
    finally:
        server.stop()
        assert "Traceback" not in server.text(), server.text()[-4000:]


async def talk(base: str, sent: list[str]) -> list[dict[str, Any]]:
    """Send the frames, then cancel and ping; read until the pong came and every run has had its done."""
    url = f"{base}/ws/chat/fz-{uuid.uuid4().hex[:12]}?api_key={KEY_A}"
    got: list[dict[str, Any]] = []
    async with websockets.connect(url, open_timeout=10, max_size=None) as ws:
        got.append(orjson.loads(await ws.recv()))
        for text in sent:
            await ws.send(text)
            if len(text.encode()) > MAX_FRAME:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
                event("closed 1009 (oversize)")
                return got
        await ws.send('{"type":"cancel","payload":{}}')
        await ws.send('{"type":"ping","payload":{}}')
        async with asyncio.timeout(15):
            while not _settled(got):
                got.append(orjson.loads(await ws.recv()))
    return got


def _settled(got: list[dict[str, Any]]) -> bool:
    kinds = Counter(f["event_type"] for f in got)
    return kinds["pong"] >= 1 and kinds["done"] >= kinds["run_started"]


@given(sent=frames)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_frames_get_errors_or_proceed_and_every_run_ends_with_exactly_one_done(
    ws_base: str, sent: list[str]
) -> None:
    got = asyncio.run(talk(ws_base, sent))
    assert got[0]["event_type"] == "connected"
    for frame in got:
        if frame["event_type"] == "error" and frame.get("seq") is None:
            assert frame["data"]["recoverable"] is True, frame
    runs = Counter(f["data"]["run_id"] for f in got if f["event_type"] == "run_started")
    done = Counter(f["data"]["run_id"] for f in got if f["event_type"] == "done")
    assert all(done[run] == 1 for run in runs), (runs, done)
    assert set(done) <= set(runs)
    event(f"runs started: {min(len(runs), 2)}+")
    event(f"error frames: {min(sum(f['event_type'] == 'error' for f in got), 2)}+")
