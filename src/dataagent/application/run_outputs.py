"""What a run does with each output of the engine other than a text delta (the hot path stays in
`RunManager._drive`): tool calls and results are published, results stored with their table and chart, usage
added to the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from dataagent.application.approvals import LiveRun
from dataagent.application.charts import tool_data
from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.domain.events import (
    AgentOutput,
    EventType,
    RunEvent,
    TextDelta,
    ToolCallRequested,
    ToolCompleted,
    UsageReported,
    text_delta,
)
from dataagent.domain.models import ChatRun, Message, Role

Publish = Callable[[ChatRun, EventType, dict[str, Any]], RunEvent]


class RunOutputs:
    def __init__(self, repository: SessionRepository, clock: Clock, ids: IdGenerator, publish: Publish) -> None:
        self._repo = repository
        self._clock = clock
        self._ids = ids
        self._publish = publish

    async def apply(self, live: LiveRun, output: AgentOutput) -> None:
        run = live.run
        if isinstance(output, TextDelta):
            if output.content:
                run.text.append(output.content)
                self._publish(run, EventType.TEXT, text_delta(output.content))
        elif isinstance(output, ToolCallRequested):
            run.tool_calls.append(
                {"tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "tool_args": output.tool_args}
            )
            self._publish(run, EventType.TOOL_CALL, {
                "tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "tool_args": output.tool_args,
            })
        elif isinstance(output, ToolCompleted):
            await self._record_tool_result(live, output)
        elif isinstance(output, UsageReported):
            run.add_usage(output.usage)

    async def _record_tool_result(self, live: LiveRun, output: ToolCompleted) -> None:
        run = live.run
        extra = tool_data(output)  # table and chart, as the event's `data` and the stored message's metadata
        meta: dict[str, Any] = {
            "tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "status": output.status, **extra,
        }
        if output.sql is not None:  # what a verified query is promoted from (application/verified.py)
            meta["sql"] = output.sql
        with anyio.CancelScope(shield=True):
            await self._repo.append_message(Message(
                self._ids.new_id("msg"), run.session_id, Role.TOOL, output.result, self._clock.now(),
                run.run_id, output.status, meta,
            ))
        if live.cancel_reason is not None:
            return
        data: dict[str, Any] = {
            "tool_call_id": output.tool_call_id, "tool_name": output.tool_name,
            "result": output.result, "status": output.status,
        }
        if extra:
            data["data"] = extra
        self._publish(run, EventType.TOOL_RESULT, data)
