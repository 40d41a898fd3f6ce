"""The client's `user_id=`: every request acts for that end user (X-User-ID), over REST, WebSocket and SSE."""

from __future__ import annotations

import pytest

from dataagent.client import AsyncDataAgentClient, Forbidden, SessionNotFound
from tests.support import KEY_A, KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration


async def test_a_client_for_one_end_user_sees_its_sessions_alone_over_every_transport() -> None:
    async with live_server(make_settings(key_scopes=["alice:end_users"])) as srv, \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_A, user_id="u1") as u1, \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_A, user_id="u2", transport="sse") as u2, \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as key:
        events = [e async for e in u1.stream("hello", session_id="c-u1")]
        assert events[-1].event_type == "done"
        await u2.ask("mine", session_id="c-u2")
        assert [s.session_id async for s in u1.sessions()] == ["c-u1"]
        assert (await key.session("c-u1")).end_user == "u1"
        for transport in ("websocket", "sse"):
            with pytest.raises(SessionNotFound):
                [e async for e in u2.join("c-u1", transport=transport)]
        with pytest.raises(SessionNotFound):
            await u2.session("c-u1")
        with pytest.raises(Forbidden) as refused:
            await key.delete_session("c-u1")
        assert refused.value.status == 403
        assert {s.session_id async for s in key.sessions()} == {"c-u1", "c-u2"}


async def test_a_client_whose_key_lacks_the_scope_is_forbidden() -> None:
    async with live_server() as srv:
        async with AsyncDataAgentClient(srv.base_url, api_key=KEY_B, user_id="u1") as bob:
            with pytest.raises(Forbidden) as refused:
                await bob.ask("hi")
        assert refused.value.status == 403 and refused.value.error_code == "forbidden"
