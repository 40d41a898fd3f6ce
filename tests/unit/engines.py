"""Small engines for unit tests: each is a real AgentEngine that follows a script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from dataagent.application.ports import RunContext
from dataagent.domain.approvals import ApprovalAction, DecisionType
from dataagent.domain.events import AgentOutput, TextDelta, ToolCallRequested, ToolCompleted, UsageReported
from dataagent.domain.models import TokenUsage


@dataclass(frozen=True)
class Step:
    kind: str  # "text" | "tool" | "approval" | "fail" | "sleep"
    value: str = ""


class ScriptedEngine:
    """Follows `script`: text deltas, tool call+result pairs, approvals (records decisions), a failure."""

    name = "scripted"

    def __init__(self, script: list[Step], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.decisions: list[DecisionType] = []
        self.closed = False

    async def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        for i, step in enumerate(self.script):
            await asyncio.sleep(self.delay_s)  # kept: the engine's pace is part of the script
            if step.kind == "text":
                yield TextDelta(step.value or f"t{i} ")
            elif step.kind == "tool":
                yield ToolCallRequested(f"call_{i}", "probe", {"i": i})
                yield ToolCompleted(f"call_{i}", "probe", f"result {i}")
            elif step.kind == "approval":
                decision = await ctx.request_approval(ApprovalAction("run_sql", {"sql": f"SELECT {i}"}))
                self.decisions.append(decision.type)
                yield TextDelta(f"[{decision.type.value}] ")
            elif step.kind == "fail":
                raise RuntimeError("scripted failure with secret internals")
            elif step.kind == "sleep":
                await asyncio.sleep(float(step.value))  # kept: a scripted pause
        yield UsageReported(TokenUsage(1, 2, 3))

    async def close(self) -> None:
        self.closed = True
