"""Engine factories for DATAAGENT_AGENT=package.module:factory tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from dataagent.application.ports import RunContext
from dataagent.domain.events import AgentOutput, TextDelta


class EchoEngine:
    name = "echo"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.closed = False

    async def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        yield TextDelta(f"{self.prefix}{ctx.question}")

    async def close(self) -> None:
        self.closed = True


def make_echo(settings: Any) -> EchoEngine:
    return EchoEngine(prefix=f"[{settings.llm_model}] ")


def not_an_engine(settings: Any) -> object:
    return object()


def broken(settings: Any) -> EchoEngine:
    raise RuntimeError("no licence")


class Factories:
    echo = staticmethod(make_echo)


NOT_CALLABLE = 42
