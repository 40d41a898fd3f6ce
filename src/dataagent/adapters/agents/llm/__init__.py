"""The LLM data agent: an OpenAI-compatible chat completions engine with SQL tools and SQL-aware approval."""

from __future__ import annotations

from dataagent.adapters.agents.llm.config import LlmConfig
from dataagent.adapters.agents.llm.engine import OpenAiEngine

__all__ = ["LlmConfig", "OpenAiEngine"]
