"""The fake OpenAI server speaks the wire format the official SDK expects."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.asyncio

MESSAGES = [
    {"role": "system", "content": "You are a data analyst."},
    {"role": "user", "content": "How many tables are there?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "list_tables", "parameters": {"type": "object", "properties": {}}},
    },
    {
        "type": "function",
        "function": {
            "name": "describe_table",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string"}, "schema": {"type": "string"}},
            },
        },
    },
]


@pytest_asyncio.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="test", max_retries=0, timeout=5.0
    ) as c:
        yield c


def _fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "FakeOpenAI-server"]


async def test_streamed_text_with_usage_chunk(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake_openai.add_text("Hello world", chunks=5, delay_s=0.0)

    stream = await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].model == "gpt-test"
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 5
    assert "".join(pieces) == "Hello world"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])

    [request] = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.authorization == "Bearer test"
    assert request.model == "gpt-test"
    assert request.stream and request.include_usage
    assert request.messages == MESSAGES
    assert fake_openai.completed == 1
    assert fake_openai.disconnects == 0
    assert fake_openai.pending == 0


async def test_stream_without_usage_option_has_no_usage_chunk(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_text("abc", chunks=3)

    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_non_streaming_completion_and_models(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_text("Three tables.", chunks=3, prompt_tokens=11, completion_tokens=4)

    completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    models = await client.models.list()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Three tables."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 4)
    assert completion.usage.total_tokens == 15
    assert [m.id async for m in models] == ["fake-model"]
    assert len(fake_openai.requests) == 1  # GET /v1/models is not recorded
    assert not fake_openai.requests[0].stream


async def test_streamed_tool_calls_reassemble_from_split_chunks(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    describe_args = {"table": "orders", "schema": "sales"}
    fake_openai.add_tool_calls(
        [("call_1", "list_tables", {}), ("call_2", "describe_table", describe_args)], arg_chunks=4
    )
    fake_openai.add_text("orders has 4 columns.", chunks=2)

    stream = await client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, stream=True)
    calls: dict[int, dict[str, str]] = {}
    fragments: dict[int, int] = {}
    finish_reason = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for tc in choice.delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                call["id"] = tc.id
            if tc.function and tc.function.name:
                call["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                call["arguments"] += tc.function.arguments
                fragments[tc.index] = fragments.get(tc.index, 0) + 1

    assert finish_reason == "tool_calls"
    assert [calls[i]["id"] for i in sorted(calls)] == ["call_1", "call_2"]
    assert [calls[i]["name"] for i in sorted(calls)] == ["list_tables", "describe_table"]
    assert json.loads(calls[0]["arguments"]) == {}
    assert json.loads(calls[1]["arguments"]) == describe_args
    assert fragments[1] == 4  # the arguments really arrived split across chunks

    # Second turn: the model must be shown the tool results and the previous assistant turn.
    follow_up = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls.values()
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '["orders"]'},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"columns": 4}'},
    ]
    answer = await client.chat.completions.create(model="m", messages=follow_up)

    assert answer.choices[0].message.content == "orders has 4 columns."
    second = fake_openai.requests[1]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool", "tool"]
    assert second.messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": '["orders"]'}
    assert [t["function"]["name"] for t in fake_openai.requests[0].tools] == ["list_tables", "describe_table"]


async def test_non_streaming_tool_calls(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake_openai.add_tool_calls([("call_9", "list_tables", {"schema": "public"})], text="Let me look.")

    completion = await client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me look."
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert (call.id, call.function.name) == ("call_9", "list_tables")
    assert json.loads(call.function.arguments) == {"schema": "public"}


@pytest.mark.parametrize(
    ("status", "error_class", "code"),
    [
        (500, openai.InternalServerError, None),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (400, openai.BadRequestError, None),
    ],
)
async def test_scripted_http_errors_raise_the_sdk_error(
    fake_openai: FakeOpenAI,
    client: openai.AsyncOpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    code: str | None,
) -> None:
    fake_openai.add_error(status=status)

    with pytest.raises(error_class) as caught:
        await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)

    assert caught.value.status_code == status
    assert caught.value.code == code
    assert "scripted by FakeOpenAI" in caught.value.message
    assert fake_openai.pending == 0


async def test_error_with_custom_body_and_retry_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_error(
        status=503,
        body={"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}},
        headers={"retry-after-ms": "1"},
    )
    fake_openai.add_text("ok")

    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=1) as retrying:
        completion = await retrying.chat.completions.create(model="m", messages=MESSAGES)

    assert completion.choices[0].message.content == "ok"
    assert len(fake_openai.requests) == 2


async def test_should_retry_false_stops_sdk_retries(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_error(status=500, should_retry=False)
    fake_openai.add_text("never sent")

    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=3) as retrying:
        with pytest.raises(openai.InternalServerError):
            await retrying.chat.completions.create(model="m", messages=MESSAGES)

    assert len(fake_openai.requests) == 1
    assert fake_openai.pending == 1


async def test_exhausted_script_answers_500_with_a_clear_message(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.InternalServerError, match="no scripted response left"):
        await client.chat.completions.create(model="m", messages=MESSAGES)

    assert len(fake_openai.requests) == 1


async def test_invalid_request_is_rejected_without_consuming_the_script(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_text("kept")

    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model="m", messages=[])

    assert fake_openai.pending == 1


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [
        ("drop", openai.APIConnectionError),
        ("malformed", json.JSONDecodeError),
        ("error_event", openai.APIError),
    ],
)
async def test_mid_stream_failure_raises_while_iterating(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI, mode: str, error_class: type[Exception]
) -> None:
    text = "abcdefghij"
    fake_openai.add_stream_failure(after_chunks=3, text=text, chunks=5, mode=mode)  # type: ignore[arg-type]

    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(error_class):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    await stream.close()

    assert "".join(received) == text[:6]  # role chunk + 3 of the 5 two-letter pieces
    assert fake_openai.disconnects == 0


async def test_non_streaming_request_with_dropped_connection(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_stream_failure(after_chunks=1, mode="drop")

    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_client_closing_stream_early_is_counted_as_disconnect(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_slow_text("token " * 40, chunks=40, delay_s=0.05)

    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    started = time.monotonic()
    await stream.close()

    assert await fake_openai.wait_disconnect(2.0) == 1
    assert time.monotonic() - started < 1.0
    assert fake_openai.completed == 0


async def test_cancelling_the_consumer_closes_the_stream(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_slow_text("word " * 100, chunks=100, delay_s=0.02)
    received: list[str] = []
    streaming = asyncio.Event()

    async def consume() -> None:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async with stream:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
                if len(received) >= 3:
                    streaming.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(2.0):
        await streaming.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await fake_openai.wait_disconnect(2.0) == 1
    assert len(received) < 50


async def test_client_timing_out_a_slow_non_streaming_request_is_a_disconnect(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.add_text("slow answer", chunks=10, delay_s=0.1)  # answered after 10 x 0.1 s

    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="k", max_retries=0, timeout=0.2
    ) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model="m", messages=MESSAGES)

    assert await fake_openai.wait_disconnect(2.0) == 1
    assert fake_openai.completed == 0


async def test_wait_disconnect_times_out_when_the_stream_completed(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.add_text("done", chunks=2)

    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    _ = [chunk async for chunk in stream]

    with pytest.raises(TimeoutError, match="client disconnect"):
        await fake_openai.wait_disconnect(0.1)
    assert fake_openai.completed == 1


async def test_stopping_mid_stream_is_prompt_and_leaks_no_thread() -> None:
    threads_before = len(_fake_threads())
    fake = FakeOpenAI()
    async with fake:
        fake.add_slow_text("x" * 200, chunks=200, delay_s=0.05)
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            await anext(aiter(stream))
            started = time.monotonic()
            await fake.aclose()
            assert time.monotonic() - started < 1.5
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    pass
    assert len(_fake_threads()) == threads_before
    with pytest.raises(RuntimeError):
        await fake.start()


async def test_failure_to_start_is_reported_and_leaks_no_thread() -> None:
    threads_before = len(_fake_threads())

    with pytest.raises(RuntimeError, match="did not start"):
        async with FakeOpenAI(host="203.0.113.1"):  # TEST-NET-3: not an address of this host
            pass

    assert len(_fake_threads()) == threads_before
