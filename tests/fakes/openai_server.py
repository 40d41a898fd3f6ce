"""A scriptable fake of the OpenAI Chat Completions HTTP API, for tests.

It is a real HTTP server (uvicorn + a tiny Starlette app) on 127.0.0.1 and a free port, running in a
background thread with its own event loop, so that it keeps answering even if the code under test
blocks the test's loop, and so that tests can use the real ``openai`` SDK (or any HTTP client) against
it. Each ``POST /v1/chat/completions`` consumes the next scripted response, in order::

    async with FakeOpenAI() as fake:
        fake.add_tool_calls([("call_1", "list_tables", {})])
        fake.add_text("There are 3 tables.", chunks=4)
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
        ...  # run the agent
        assert fake.requests[1].messages[-1]["role"] == "tool"

Streaming requests (``"stream": true``) get ``text/event-stream`` ``chat.completion.chunk`` events
in the real wire format: a role chunk, content chunks, tool-call chunks (the arguments JSON split over
several chunks), a chunk carrying ``finish_reason``, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Other requests get a
``chat.completion`` object built from the same script entry.

The SDK retries 408/409/429/5xx and connection errors by default (``max_retries=2``, with backoff
of half a second and more), and every retry consumes a scripted response. Tests that are not about
retries should build their client with ``max_retries=0``; a retry test can send
``headers={"retry-after-ms": "1"}`` with the error to keep the backoff short.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["FailureMode", "FakeOpenAI", "RecordedRequest"]

FailureMode = Literal["drop", "malformed", "error_event"]
ToolCallSpec = tuple[str, str, Mapping[str, Any] | str]

_SSE_DONE = b"data: [DONE]\n\n"
_DEFAULT_ERROR_SHAPES: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request (scripted by FakeOpenAI)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (scripted by FakeOpenAI)."),
    403: ("permission_error", None, "Forbidden (scripted by FakeOpenAI)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (scripted by FakeOpenAI)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (scripted by FakeOpenAI)."),
}


class _InjectedConnectionDrop(Exception):
    """Raised inside the server so that uvicorn closes the connection in the middle of a response."""


class _SuppressInjectedDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for connection drops the script asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _InjectedConnectionDrop)


_DROP_LOG_FILTER = _SuppressInjectedDrops()


def _install_drop_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _DROP_LOG_FILTER not in logger.filters:
        logger.addFilter(_DROP_LOG_FILTER)


# --------------------------------------------------------------------------------------------- script


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Turn:
    """One assistant turn: optional text, optional tool calls, optionally failing part-way."""

    content: str | None
    chunks: int = 1
    tool_calls: tuple[_ToolCall, ...] = ()
    arg_chunks: int = 3
    delay_s: float = 0.0
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    fail_after: int | None = None
    fail_mode: FailureMode = "drop"
    pieces: tuple[str, ...] | None = None  # the content chunks exactly as given (else split in `chunks`)


@dataclass(frozen=True)
class _ErrorReply:
    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received. Indexing (``req["messages"]``) reads the JSON body."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: Any  # the parsed JSON body, or None when it was not JSON
    raw: bytes

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default) if isinstance(self.body, dict) else default

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.get("messages") or []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.get("tools") or []

    @property
    def model(self) -> str | None:
        model = self.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(self.get("stream", False))

    @property
    def include_usage(self) -> bool:
        options = self.get("stream_options") or {}
        return bool(options.get("include_usage", False))

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


def _split(text: str, parts: int) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty pieces of nearly equal length, in order."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces, pos = [], 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        pieces.append(text[pos : pos + n])
        pos += n
    return pieces


def _dumps(obj: Any) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (scripted on purpose): sent as its `\\ud800` escape
        return json.dumps(obj, separators=(",", ":")).encode()


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _error_body(message: str, type_: str, code: str | None) -> bytes:
    return _dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def _error_response(status: int, message: str, type_: str, code: str | None = None) -> Response:
    return Response(_error_body(message, type_, code), status_code=status, media_type="application/json")


# ---------------------------------------------------------------------------------------------- reply


class _Reply:
    """ASGI response: sends ``parts`` (each after its delay) while watching for the client leaving.

    ``tail`` is the last body piece; ``None`` means "drop the connection instead of finishing".
    """

    def __init__(
        self,
        fake: FakeOpenAI,
        *,
        status: int,
        headers: Mapping[str, str],
        parts: Sequence[tuple[float, bytes]],
        tail: bytes | None,
        delay_before_start: float = 0.0,
    ) -> None:
        self._fake = fake
        self._status = status
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._parts = parts
        self._tail = tail
        self._delay_before_start = delay_before_start
        self._finished = False

    async def _produce(self, send: Send) -> None:
        if self._delay_before_start > 0:
            await asyncio.sleep(self._delay_before_start)  # kept: a scripted slow server
        await send({"type": "http.response.start", "status": self._status, "headers": self._headers})
        for delay, data in self._parts:
            if delay > 0:
                await asyncio.sleep(delay)  # kept: a scripted slow stream
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if self._tail is None:
            raise _InjectedConnectionDrop("FakeOpenAI: scripted connection drop")
        # Count the response as completed before its last bytes go out: the client runs in another
        # thread and may assert on `fake.completed` as soon as it has read them.
        self._finished = True
        self._fake._record_completed()
        await send({"type": "http.response.body", "body": self._tail, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def client_gone() -> None:
            # The request body has been read already, so uvicorn's receive() now waits until the
            # client disconnects or the response is complete, and returns http.disconnect in both cases.
            while (await receive())["type"] != "http.disconnect":
                pass

        producer = asyncio.ensure_future(self._produce(send))
        watcher = asyncio.ensure_future(client_gone())
        self._fake._active.add(producer)
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            producer.cancel()
            watcher.cancel()
            raise
        finally:
            self._fake._active.discard(producer)

        if not producer.done():
            # The client went away first: stop producing, like a real server stops generating tokens.
            producer.cancel()
            watcher.cancel()
            await asyncio.wait({producer, watcher})
            if not self._finished:
                self._fake._record_disconnect()
            return

        watcher.cancel()
        await asyncio.wait({watcher})
        if producer.cancelled():  # the fake is shutting down
            raise _InjectedConnectionDrop("FakeOpenAI: stopped while responding")
        exc = producer.exception()
        if exc is not None:
            raise exc


class _UvicornServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[_UvicornServer], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started(self)


# ----------------------------------------------------------------------------------------------- fake


class FakeOpenAI:
    """Scriptable OpenAI-compatible Chat Completions server on 127.0.0.1. See the module docstring."""

    def __init__(
        self,
        *,
        model: str = "fake-model",
        models: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 10.0,
        shutdown_timeout_s: float = 10.0,
    ) -> None:
        self.default_model = model
        self.models: tuple[str, ...] = tuple(models) if models else (model,)
        self.requests: list[RecordedRequest] = []
        """Every ``POST /v1/chat/completions`` received, in order (``GET /v1/models`` is not recorded)."""
        self.disconnects = 0
        """Responses whose client went away before the fake finished sending them."""
        self.completed = 0
        """Responses sent to the end (streams including ``data: [DONE]``)."""

        self._host = host
        self._startup_timeout_s = startup_timeout_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._script: deque[_Turn | _ErrorReply] = deque()
        self._lock = threading.Lock()
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._server: _UvicornServer | None = None
        self._server_loop: asyncio.AbstractEventLoop | None = None
        self._active: set[asyncio.Future[None]] = set()  # touched only on the server loop
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that started the fake
        self._changed: asyncio.Event | None = None
        self._started: asyncio.Future[int] | None = None
        self._stopped: asyncio.Future[BaseException | None] | None = None
        self._closed = False
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception},
        )

    # -------------------------------------------------------------------------------------- scripting

    def add_text(
        self,
        text: str,
        chunks: int = 1,
        delay_s: float = 0.0,
        *,
        finish_reason: str = "stop",
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> FakeOpenAI:
        """Answer the next request with ``text``, streamed as ``chunks`` pieces.

        A stream sends the role chunk at once and waits ``delay_s`` before each later chunk; a
        non-streaming request is answered after ``delay_s * chunks``.
        """
        return self._enqueue(
            _Turn(
                content=text,
                chunks=chunks,
                delay_s=delay_s,
                finish_reason=finish_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )

    def add_text_pieces(self, pieces: Sequence[str]) -> FakeOpenAI:
        """Answer the next request with these content chunks, as they are (e.g. the halves of a surrogate pair,
        or a lone surrogate: sent as a JSON `\\udXXX` escape)."""
        return self._enqueue(_Turn(content="".join(pieces), chunks=len(pieces), pieces=tuple(pieces)))

    def add_slow_text(self, text: str, chunks: int = 10, delay_s: float = 0.1) -> FakeOpenAI:
        """Like :meth:`add_text`, with a pause before every chunk after the first (role) chunk."""
        return self.add_text(text, chunks=chunks, delay_s=delay_s)

    def add_tool_calls(
        self,
        calls: Sequence[ToolCallSpec],
        *,
        text: str | None = None,
        text_chunks: int = 1,
        arg_chunks: int = 3,
        delay_s: float = 0.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> FakeOpenAI:
        """Answer the next request with one assistant turn calling tools, ``finish_reason="tool_calls"``.

        ``calls`` holds ``(call_id, function_name, arguments)``; arguments are a mapping (sent as
        compact JSON) or a string sent verbatim (to test malformed arguments). When streaming, each
        call's arguments are split over up to ``arg_chunks`` chunks.
        """
        if not calls:
            raise ValueError("add_tool_calls needs at least one call")
        tool_calls = tuple(
            _ToolCall(call_id, name, args if isinstance(args, str) else json.dumps(dict(args)))
            for call_id, name, args in calls
        )
        return self._enqueue(
            _Turn(
                content=text,
                chunks=text_chunks,
                tool_calls=tool_calls,
                arg_chunks=arg_chunks,
                delay_s=delay_s,
                finish_reason="tool_calls",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )

    def add_error(
        self,
        status: int = 500,
        body: Mapping[str, Any] | str | bytes | None = None,
        *,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        should_retry: bool | None = None,
    ) -> FakeOpenAI:
        """Answer the next request with an HTTP error (before any streaming starts).

        Without ``body`` the body is OpenAI's ``{"error": {"message", "type", "param", "code"}}``
        with defaults that fit ``status``. ``should_retry`` sets the ``x-should-retry`` header the
        SDK obeys; ``headers`` can add e.g. ``retry-after-ms``.
        """
        default_type, default_code, default_message = _DEFAULT_ERROR_SHAPES.get(
            status,
            ("server_error", None, f"The server had an error (scripted by FakeOpenAI, status {status})."),
        )
        if body is None:
            raw = _error_body(message or default_message, type or default_type, code or default_code)
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = _dumps(body)
        all_headers = {"content-type": "application/json"}
        if should_retry is not None:
            all_headers["x-should-retry"] = "true" if should_retry else "false"
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        return self._enqueue(_ErrorReply(status, raw, all_headers))

    def add_stream_failure(
        self,
        after_chunks: int = 2,
        *,
        text: str = "This answer is cut off in the middle of a sentence and never finishes.",
        chunks: int | None = None,
        mode: FailureMode = "drop",
        delay_s: float = 0.0,
    ) -> FakeOpenAI:
        """Start answering with ``text``, then fail after ``after_chunks`` chunks following the role chunk.

        ``mode``: ``"drop"`` closes the connection without finishing the chunked body (the SDK raises
        ``openai.APIConnectionError`` while iterating); ``"malformed"`` sends a ``data:`` line that
        is not valid JSON, then ``[DONE]`` (the SDK raises ``json.JSONDecodeError``);
        ``"error_event"`` sends ``data: {"error": {...}}``, then ``[DONE]`` (the SDK raises
        ``openai.APIError``). A non-streaming request gets a truncated body for ``"malformed"`` and a
        dropped connection otherwise.
        """
        if after_chunks < 0:
            raise ValueError("after_chunks must be >= 0")
        if mode not in ("drop", "malformed", "error_event"):
            raise ValueError(f"unknown failure mode {mode!r}")
        pieces = chunks if chunks is not None else after_chunks + 2
        if pieces <= after_chunks or len(text) <= after_chunks:
            raise ValueError("text must be long enough for more than after_chunks chunks")
        return self._enqueue(
            _Turn(content=text, chunks=pieces, delay_s=delay_s, fail_after=after_chunks, fail_mode=mode)
        )

    @property
    def pending(self) -> int:
        """Scripted responses not consumed yet."""
        with self._lock:
            return len(self._script)

    def _enqueue(self, item: _Turn | _ErrorReply) -> FakeOpenAI:
        with self._lock:
            self._script.append(item)
        return self

    # --------------------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not running; use `async with FakeOpenAI() as fake:`")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what ``openai.AsyncOpenAI(base_url=...)`` expects."""
        return f"http://{self._host}:{self.port}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose(raise_errors=exc_type is None)

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a FakeOpenAI instance can only be started once")
        _install_drop_log_filter()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._started = self._loop.create_future()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(target=self._thread_main, name="FakeOpenAI-server", daemon=True)
        self._thread.start()
        try:
            async with asyncio.timeout(self._startup_timeout_s):
                self._port = await asyncio.shield(self._started)
        except BaseException:
            await self.aclose(raise_errors=False)
            raise

    async def aclose(self, *, raise_errors: bool = True) -> None:
        """Stop the server: abort responses still being sent, close connections, join the thread."""
        if self._thread is None or self._closed:
            return
        self._closed = True
        assert self._stopped is not None
        server, server_loop = self._server, self._server_loop
        if server_loop is not None:
            try:
                server_loop.call_soon_threadsafe(self._abort_active_responses)
            except RuntimeError:  # the server loop has already finished
                pass
        if server is not None:
            server.should_exit = True
        try:
            async with asyncio.timeout(self._shutdown_timeout_s):
                error = await asyncio.shield(self._stopped)
        except TimeoutError:
            if server is not None:
                server.force_exit = True
            async with asyncio.timeout(2.0):
                error = await asyncio.shield(self._stopped)
        self._thread.join(timeout=1.0)
        if raise_errors and error is not None and not (isinstance(error, SystemExit) and not error.code):
            raise RuntimeError(f"FakeOpenAI server thread failed: {error!r}") from error

    def _thread_main(self) -> None:
        error: BaseException | None = None
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test loop, never lost
            error = exc
        finally:
            self._call_in_test_loop(self._on_thread_exit, error)

    async def _serve(self) -> None:
        self._server_loop = asyncio.get_running_loop()
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=0,
            lifespan="off",
            ws="none",
            log_config=None,  # leave the process' logging configuration alone
            timeout_graceful_shutdown=2,
        )
        self._server = _UvicornServer(config, on_started=self._on_server_started)
        await self._server.serve()

    def _on_server_started(self, server: _UvicornServer) -> None:
        port = server.servers[0].sockets[0].getsockname()[1]
        self._call_in_test_loop(self._resolve_started, port)

    def _resolve_started(self, port: int) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_result(port)

    def _on_thread_exit(self, error: BaseException | None) -> None:
        if self._started is not None and not self._started.done():
            failure = RuntimeError(f"FakeOpenAI server did not start: {error!r}")
            failure.__cause__ = error
            self._started.set_exception(failure)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(error)

    def _abort_active_responses(self) -> None:
        for task in list(self._active):
            task.cancel()

    # ---------------------------------------------------------------------------- cross-thread events

    def _call_in_test_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the test's loop is closed; nobody is waiting any more
            pass

    def _notify(self) -> None:
        if self._changed is not None:
            self._call_in_test_loop(self._changed.set)

    def _record_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._notify()

    def _record_completed(self) -> None:
        with self._lock:
            self.completed += 1
        self._notify()

    async def _wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        if self._changed is None:
            raise RuntimeError("FakeOpenAI is not running")
        changed = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    changed.clear()
                    if predicate():
                        break
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"FakeOpenAI: timed out after {timeout_s}s waiting for {what}") from None

    async def wait_disconnect(self, timeout_s: float = 2.0, count: int = 1) -> int:
        """Wait until at least ``count`` responses in total were abandoned by their client."""
        await self._wait_until(
            lambda: self.disconnects >= count,
            timeout_s,
            f"{count} client disconnect(s) (saw {self.disconnects}, completed {self.completed})",
        )
        return self.disconnects

    async def wait_requests(self, count: int, timeout_s: float = 2.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` chat completion requests have arrived; return them all."""
        await self._wait_until(
            lambda: len(self.requests) >= count,
            timeout_s,
            f"{count} request(s) (saw {len(self.requests)})",
        )
        return list(self.requests)

    # ------------------------------------------------------------------------------------- endpoints

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_response(
            exc.status_code,
            f"FakeOpenAI: {request.method} {request.url.path}: {exc.detail}",
            "invalid_request_error",
        )

    async def _list_models(self, request: Request) -> Response:
        created = int(time.time())
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "fake-openai"} for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response | _Reply:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        with self._lock:
            self.requests.append(record)
            number = len(self.requests)
            problem = self._validate(body)
            item = None if problem else (self._script.popleft() if self._script else None)
        self._notify()

        if problem:
            return _error_response(400, f"FakeOpenAI: {problem}", "invalid_request_error")
        if item is None:
            return _error_response(
                500,
                f"FakeOpenAI: no scripted response left for chat completion request #{number} "
                f"(model={record.model!r}, {len(record.messages)} message(s)); add one with "
                "fake.add_text()/add_tool_calls()/add_error()/add_stream_failure().",
                "fake_openai_error",
                "script_exhausted",
            )
        if isinstance(item, _ErrorReply):
            return Response(item.body, status_code=item.status, headers=dict(item.headers))
        return self._turn_reply(item, body, number)

    @staticmethod
    def _validate(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the request body is not a JSON object"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "'model' is required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array"
        return None

    def _turn_reply(self, turn: _Turn, body: dict[str, Any], number: int) -> _Reply:
        completion_id = f"chatcmpl-fake{number:04d}"
        created = int(time.time())
        model = body.get("model") or self.default_model
        stream = bool(body.get("stream"))
        include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))

        content_pieces = list(turn.pieces) if turn.pieces is not None else _split(turn.content or "", turn.chunks)
        deltas: list[dict[str, Any]] = [{"content": piece} for piece in content_pieces]
        args_pieces = 0
        for index, call in enumerate(turn.tool_calls):
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _split(call.arguments, turn.arg_chunks):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                args_pieces += 1

        prompt_tokens = turn.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = max(1, len(_dumps(body.get("messages", []))) // 4)
        completion_tokens = turn.completion_tokens
        if completion_tokens is None:
            completion_tokens = max(1, len(content_pieces) + args_pieces)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        headers = {"x-request-id": f"req_fake{number:04d}", "openai-processing-ms": "1"}

        if not stream:
            return self._completion_reply(turn, completion_id, created, model, usage, headers)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        role = {"role": "assistant", "content": "" if turn.content is not None else None, "refusal": None}
        parts = [(0.0, chunk(role))]
        sent = deltas if turn.fail_after is None else deltas[: turn.fail_after]
        parts += [(turn.delay_s, chunk(delta)) for delta in sent]

        tail: bytes | None
        if turn.fail_after is None:
            tail = chunk({}, turn.finish_reason)
            if include_usage:
                tail += _sse(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
            tail += _SSE_DONE
        elif turn.fail_mode == "malformed":
            # Both in one write, so the client sees the bad line and the end of the stream together.
            tail = b'data: {"id":"' + completion_id.encode() + b'","object":"chat.completion.chunk","choi\n\n'
            tail += _SSE_DONE
        elif turn.fail_mode == "error_event":
            tail = _sse(
                {
                    "error": {
                        "message": "FakeOpenAI: scripted error in the middle of the stream",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            tail += _SSE_DONE
        else:
            tail = None
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **headers}
        return _Reply(self, status=200, headers=headers, parts=parts, tail=tail)

    def _completion_reply(
        self,
        turn: _Turn,
        completion_id: str,
        created: int,
        model: str,
        usage: dict[str, int],
        headers: dict[str, str],
    ) -> _Reply:
        message: dict[str, Any] = {"role": "assistant", "content": turn.content, "refusal": None}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in turn.tool_calls
            ]
        data = _dumps(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.finish_reason}
                ],
                "usage": usage,
            }
        )
        delay = turn.delay_s * max(1, turn.chunks)
        if turn.fail_after is None:
            parts: list[tuple[float, bytes]] = []
            tail: bytes | None = data
        elif turn.fail_mode == "malformed":
            parts, tail = [], data[: len(data) // 2]
            data = tail
        else:
            parts, tail = [(0.0, data[: len(data) // 2])], None
        headers = {"content-type": "application/json", "content-length": str(len(data)), **headers}
        return _Reply(self, status=200, headers=headers, parts=parts, tail=tail, delay_before_start=delay)
