"""`DataAgentClient`: the same calls as `AsyncDataAgentClient`, blocking, on an event loop of its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from dataagent.client.aclient import AsyncDataAgentClient, TransportName
from dataagent.client.bodies import CancelResult, ChatResult, Health, Message, RunHandle, SessionInfo
from dataagent.client.models import Event, HitlEvent

T = TypeVar("T")


class _Portal:
    """An event loop on a daemon thread; coroutines and async iterators run there, callers block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dataagent-client", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.run(_next(source))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _next(source: AsyncIterator[T]) -> T:
    return await source.__anext__()


class DataAgentClient:
    """A blocking client: `with DataAgentClient(url, api_key=...) as client: client.ask(...)`. Options as
    `AsyncDataAgentClient`; a `HitlEvent`'s `approve()`, `reject()` and `edit()` return at once here."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", **options: Any) -> None:
        self._portal = _Portal()
        self._client = self._portal.run(_make(base_url, options))

    def __repr__(self) -> str:
        return f"DataAgentClient(base_url={self._client.config.base_url!r}, transport={self._client.transport!r})"

    def __enter__(self) -> DataAgentClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._portal.run(self._client.aclose())
        self._portal.close()

    def ask(self, message: str, **options: Any) -> ChatResult:
        return self._blocking(self._portal.run(self._client.ask(message, **options)))

    def start(self, message: str, **options: Any) -> RunHandle:
        return self._portal.run(self._client.start(message, **options))

    def stream(self, message: str, *, transport: TransportName | None = None, **options: Any) -> Iterator[Event]:
        for event in self._portal.iterate(self._client.stream(message, transport=transport, **options)):
            yield self._blocking_event(event)

    def join(self, session_id: str, *, after_seq: int | None = None,
             transport: TransportName | None = None) -> Iterator[Event]:
        for event in self._portal.iterate(self._client.join(session_id, after_seq=after_seq, transport=transport)):
            yield self._blocking_event(event)

    def cancel(self, session_id: str, run_id: str | None = None) -> CancelResult:
        return self._portal.run(self._client.cancel(session_id, run_id))

    def decide(self, session_id: str, interrupt_id: str, decision: dict[str, Any]) -> ChatResult:
        return self._blocking(self._portal.run(self._client.decide(session_id, interrupt_id, decision)))

    def sessions(self, *, page_size: int = 100) -> Iterator[SessionInfo]:
        return self._portal.iterate(self._client.sessions(page_size=page_size))

    def session(self, session_id: str) -> SessionInfo:
        return self._portal.run(self._client.session(session_id))

    def delete_session(self, session_id: str) -> None:
        self._portal.run(self._client.delete_session(session_id))

    def history(self, session_id: str, *, page_size: int = 100) -> Iterator[Message]:
        return self._portal.iterate(self._client.history(session_id, page_size=page_size))

    def health(self) -> Health:
        return self._portal.run(self._client.health())

    def _blocking(self, result: ChatResult) -> ChatResult:
        if result.interrupt is not None:
            self._blocking_event(result.interrupt)
        return result

    def _blocking_event(self, event: Event) -> Event:
        """A hitl event's decision, run on the portal's loop: its methods block and return the outcome."""
        if isinstance(event, HitlEvent) and event._decide is not None:
            decide = event._decide
            event.bind(lambda decision: self._portal.run(decide(decision)))
        return event


async def _make(base_url: str, options: dict[str, Any]) -> AsyncDataAgentClient:
    return AsyncDataAgentClient(base_url, **options)
