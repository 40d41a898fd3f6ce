"""The deterministic offline demo engine: streams a fixed-shape answer, no LLM needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from dataagent.application.ports import RunContext
from dataagent.domain.events import AgentOutput, TextDelta


def split_answer(text: str, chunks: int) -> list[str]:
    """Cut `text` into exactly `chunks` word-aligned deltas, padding with `tok{i} ` if it is too short."""
    words = [w + " " for w in text.split()]
    if len(words) >= chunks:
        bounds = [round(i * len(words) / chunks) for i in range(chunks + 1)]
        return ["".join(words[bounds[i] : bounds[i + 1]]) for i in range(chunks)]
    return words + [f"tok{i} " for i in range(len(words), chunks)]


def demo_answer(question: str) -> str:
    return (
        "This is the DataAgent demo engine (no LLM is connected). "
        f"You asked: “{' '.join(question.split())}”. "
        "Ask an SQL statement such as SELECT * FROM customers to see approval and tables at work."
    )


class DemoEngine:
    """Streams its answer as `chunks` deltas, sleeping `delay_ms` before each one."""

    name = "demo"

    def __init__(self, chunks: int = 20, delay_ms: float = 25.0) -> None:
        self._chunks = max(1, chunks)
        self._delay_s = max(0.0, delay_ms) / 1000.0

    async def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        async for output in self._stream_text(demo_answer(ctx.question)):
            yield output

    async def _stream_text(self, text: str) -> AsyncGenerator[AgentOutput, None]:
        for piece in split_answer(text, self._chunks):
            await asyncio.sleep(self._delay_s)
            yield TextDelta(piece)

    async def close(self) -> None:
        return None
