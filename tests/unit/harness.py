"""The core wired with its real in-memory adapters, for use-case tests without HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.chat import ChatService
from dataagent.application.hub import EventHub
from dataagent.application.limits import Limits
from dataagent.application.ports import AgentEngine
from dataagent.application.runs import RunManager, RunSettings
from dataagent.application.sessions import SessionService


@dataclass
class Core:
    repo: InMemorySessionRepository
    broker: EventHub
    runs: RunManager
    chat: ChatService
    sessions: SessionService


def build_core(
    engine: AgentEngine, hitl_timeout_s: float = 300.0, replay_events: int = 1000,
    repo: InMemorySessionRepository | None = None, limits: Limits | None = None,
) -> Core:
    """The core around `engine`; pass the `repo` of another core to model a restart on a durable store."""
    repo = repo or InMemorySessionRepository()
    broker = in_memory_hub(replay_events=replay_events)
    clock, ids = SystemClock(), UuidIdGenerator()
    runs = RunManager(repo, broker, engine, clock, ids, RunSettings(hitl_timeout_s=hitl_timeout_s), limits)
    runs.attach()
    chat = ChatService(repo, broker, runs, clock, ids, limits=limits)
    return Core(repo, broker, runs, chat, SessionService(repo, runs, clock, broker))
