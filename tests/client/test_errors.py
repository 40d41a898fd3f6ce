"""Typed errors per error_code from a real server, and the API key kept out of every repr and log line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dataagent.client import (
    AsyncDataAgentClient,
    CapacityExceeded,
    DataAgentClient,
    DecisionConflict,
    HitlEvent,
    InterruptNotFound,
    NoActiveRun,
    RateLimited,
    RunInProgress,
    SessionNotFound,
    Unauthorized,
    ValidationFailed,
)
from tests.support import KEY_A, KEY_B, live_server, make_settings, wait_for_connections, ws_connect

pytestmark = pytest.mark.integration

SQL = "select name, city from customers order by id limit 5"


async def test_a_wrong_key_is_unauthorized_over_rest_and_websocket() -> None:
    async with live_server() as srv, AsyncDataAgentClient(srv.base_url, api_key="wrong") as client:
        with pytest.raises(Unauthorized) as rest:
            await client.ask("hi")
        assert rest.value.status == 401 and rest.value.error_code == "unauthorized" and rest.value.request_id
        with pytest.raises(Unauthorized):
            [e async for e in client.stream("hi")]


async def test_another_keys_session_is_session_not_found_over_rest_sse_and_websocket() -> None:
    async with live_server() as srv, AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as alice, \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_B) as bob:
        await alice.ask("hi", session_id="mine")
        with pytest.raises(SessionNotFound) as rest:
            await bob.session("mine")
        assert rest.value.status == 404
        for transport in ("websocket", "sse"):
            with pytest.raises(SessionNotFound):
                [e async for e in bob.join("mine", transport=transport)]
        with pytest.raises(NoActiveRun):
            await alice.cancel("mine")
        with pytest.raises(ValidationFailed) as invalid:
            await alice.ask(" ")
        assert invalid.value.status == 422 and invalid.value.details


async def test_a_second_question_while_one_runs_is_run_in_progress_and_a_second_decision_a_conflict() -> None:
    async with live_server() as srv, AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as client:
        result = await client.ask(SQL, session_id="busy")
        assert result.interrupt is not None
        with pytest.raises(RunInProgress) as busy:
            await client.ask("again", session_id="busy")
        assert busy.value.status == 409
        with pytest.raises(RunInProgress):
            [e async for e in client.stream("again", session_id="busy")]
        await result.interrupt.approve()
        with pytest.raises(DecisionConflict) as conflict:
            await result.interrupt.approve()
        assert conflict.value.status == 409
        with pytest.raises(InterruptNotFound):
            await client.decide("busy", "nope", {"type": "approve"})


async def test_over_capacity_is_capacity_exceeded_with_retry_after() -> None:
    async with live_server(make_settings(max_connections=1)) as srv, ws_connect(srv, "held"), \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as client:
        await wait_for_connections(srv, 1)
        with pytest.raises(CapacityExceeded) as full:
            await client.ask("hi")
        assert full.value.status == 503 and full.value.retry_after == 1.0


async def test_the_api_key_is_in_no_repr_and_no_log_line(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-very-secret-key-0123456789"
    settings = make_settings(api_keys=[f"carol:{secret}"])
    caplog.set_level(logging.DEBUG)
    async with live_server(settings) as srv:
        async with AsyncDataAgentClient(srv.base_url, api_key=secret) as client:
            texts = [repr(client), repr(client.config), str(client.config), repr(client._http.headers)]
            for transport in ("websocket", "sse"):
                async for event in client.stream(SQL, transport=transport):
                    texts.append(repr(event))
                    if isinstance(event, HitlEvent):
                        await event.approve()
            with pytest.raises(SessionNotFound) as missing:
                await client.session("nobody")
            texts += [repr(missing.value), str(missing.value)]

        def blocking() -> list[str]:
            with DataAgentClient(srv.base_url, api_key=secret) as sync:
                return [repr(sync), sync.ask("hi").content]

        texts += await asyncio.to_thread(blocking)
    assert "Authorization: Bearer ***" in caplog.text  # the handshake headers were logged, the key redacted
    for text in [*texts, caplog.text]:
        assert secret not in text


async def test_past_the_rate_the_client_raises_rate_limited_with_when_to_retry_over_rest_sse_and_websocket() -> None:
    async with live_server(make_settings(rate_limit="1/minute")) as srv, \
            AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as client:
        await client.ask("hi")
        with pytest.raises(RateLimited) as rest:
            await client.ask("again")
        assert rest.value.status == 429 and rest.value.details and rest.value.details["kind"] == "questions"
        assert rest.value.retry_after is not None and 1 <= rest.value.retry_after <= 60
        for transport in ("websocket", "sse"):
            with pytest.raises(RateLimited) as streamed:
                [e async for e in client.stream("again", transport=transport)]
            assert streamed.value.retry_after is not None and streamed.value.details
