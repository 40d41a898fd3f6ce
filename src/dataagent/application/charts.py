"""What a tool result carries besides its text: its table and, when one suits it, a chart."""

from __future__ import annotations

from typing import Any

from dataagent.domain.charts import chart_for
from dataagent.domain.events import ToolCompleted


def tool_data(output: ToolCompleted) -> dict[str, Any]:
    """`{table?, chart?}`: the engine's chart if it made one, else the server's chart of the table (or none)."""
    data: dict[str, Any] = {}
    if output.table is not None:
        data["table"] = output.table
    chart = output.chart if output.chart is not None else (chart_for(output.table) if output.table else None)
    if chart is not None:
        data["chart"] = chart
    return data
