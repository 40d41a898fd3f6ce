"""A stream whose connection is cut mid-answer (through a TCP proxy) resumes without the caller seeing it;
a resume the server can no longer serve raises RecoveryFailed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dataagent.client import AsyncDataAgentClient, DoneEvent, Event, RecoveryFailed, TextEvent
from tests.support import KEY_A, LiveServer, eventually, live_server, make_settings
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def text_of(events: list[Event]) -> str:
    return "".join(e.data.content for e in events if isinstance(e, TextEvent))


async def run_ended(srv: LiveServer, session_id: str) -> None:
    async with srv.client() as http:
        async def ended() -> bool:
            r = await http.get(f"/api/v1/sessions/{session_id}")
            return r.status_code == 200 and r.json()["active_run_id"] is None
        await eventually(ended, timeout=15, what="the run ended")


async def cut_through(srv: LiveServer, proxy: TcpProxy, client: AsyncDataAgentClient, session_id: str,
                      transport: str, cut_after: int = 3) -> list[Event]:
    """Stream a question; after `cut_after` text events cut the connection, keep it cut until the run has
    ended on the server, then let the client reconnect."""
    events: list[Event] = []
    restored: asyncio.Task[None] | None = None

    async def restore_when_ended() -> None:
        await run_ended(srv, session_id)
        proxy.restore()

    try:
        async for event in client.stream("a long answer", session_id=session_id, transport=transport):
            events.append(event)
            if restored is None and sum(isinstance(e, TextEvent) for e in events) == cut_after:
                proxy.cut()
                restored = asyncio.create_task(restore_when_ended())
    finally:
        if restored is not None:
            await restored
    return events


async def serve(replay_events: int = 1000) -> AsyncIterator[tuple[LiveServer, TcpProxy, AsyncDataAgentClient]]:
    settings = make_settings(demo_chunks=60, demo_chunk_delay_ms=10, replay_events=replay_events)
    async with live_server(settings) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        async with TcpProxy("127.0.0.1", port) as proxy, AsyncDataAgentClient(
                f"http://127.0.0.1:{proxy.port}", api_key=KEY_A, backoff=0.05, max_backoff=0.5, retries=60) as client:
            yield srv, proxy, client


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_stream_cut_mid_answer_completes_with_the_exact_stored_text(transport: str) -> None:
    async for srv, proxy, client in serve():
        events = await cut_through(srv, proxy, client, f"cut-{transport}", transport)
        assert proxy.connections >= 2
        assert isinstance(events[-1], DoneEvent) and events[-1].data.status == "completed"
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs)), "no gap in order, no duplicate"
        stored = [m async for m in client.history(f"cut-{transport}") if m.role == "assistant"][0].content
        assert text_of(events) == stored and len(stored) > 0


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_resume_past_the_held_events_raises_recovery_failed(transport: str) -> None:
    async for srv, proxy, client in serve(replay_events=10):
        with pytest.raises(RecoveryFailed) as failed:
            await cut_through(srv, proxy, client, f"lost-{transport}", transport)
        assert failed.value.session_id == f"lost-{transport}" and failed.value.after_seq


async def test_join_with_an_after_seq_no_longer_held_raises_recovery_failed() -> None:
    async for _srv, _proxy, client in serve(replay_events=10):
        events = [e async for e in client.stream("a long answer", session_id="stale")]
        with pytest.raises(RecoveryFailed):
            [e async for e in client.join("stale", after_seq=events[1].seq)]
