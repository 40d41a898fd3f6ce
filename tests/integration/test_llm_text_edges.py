"""Model text that is not valid UTF-8 on its own (issue 17, item 6): over a real server and FakeOpenAI."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support import live_server, make_settings, ws_connect

pytestmark = pytest.mark.integration


def llm_settings(fake: FakeOpenAI) -> Any:
    return make_settings(agent="llm", llm_base_url=fake.base_url, llm_api_key="sk-test", llm_model="fake-model",
                         llm_timeout=10, llm_retries=0)


async def socket_answer(fake: FakeOpenAI, pieces: list[str], sid: str) -> tuple[str, list[dict[str, Any]], str]:
    """Ask over a socket while the model streams `pieces`: (the text streamed, the frames, the text stored)."""
    fake.add_text_pieces(pieces)
    async with live_server(llm_settings(fake)) as srv, srv.client() as c, ws_connect(srv, sid) as ws:
        await ws.recv()
        await ws.send("chat", message="say hi")
        frames = await ws.until("done")
        await ws.send("ping")
        assert (await ws.recv())["event_type"] == "pong"  # the socket is still open
        history = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    streamed = "".join(f["data"]["content"] for f in frames if f["event_type"] == "text")
    return streamed, frames, history[-1]["content"]


async def test_an_emoji_split_across_two_chunks_arrives_whole_and_is_stored_as_streamed(
    fake_openai: FakeOpenAI,
) -> None:
    streamed, frames, stored = await socket_answer(fake_openai, ["smile ", "\ud83d", "\ude00", " done"], "emo1")
    assert frames[-1]["data"]["status"] == "completed"
    assert streamed == stored == "smile \U0001f600 done"


async def test_a_lone_surrogate_from_the_model_is_replaced_and_the_answer_is_stored(fake_openai: FakeOpenAI) -> None:
    streamed, frames, stored = await socket_answer(fake_openai, ["a", "\ud800", "b", "\udc00"], "emo2")
    assert frames[-1]["data"]["status"] == "completed"
    assert streamed == stored == "a\ufffdb\ufffd"


async def test_a_stream_ending_on_half_a_pair_over_rest_ends_with_a_replacement(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_text_pieces(["end ", "\ud83d"])
    async with live_server(llm_settings(fake_openai)) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "say hi", "session_id": "emo3"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["content"] == "end \ufffd"
