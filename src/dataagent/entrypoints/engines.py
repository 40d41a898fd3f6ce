"""Which agent engine runs: DATAAGENT_AGENT = auto | demo | llm | package.module:factory."""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from dataagent import __version__
from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.examples import Fts5ExampleFinder
from dataagent.adapters.agents.llm import LlmConfig, OpenAiEngine
from dataagent.adapters.agents.sql import (
    DataPolicy,
    DataPolicyError,
    SqlDatabase,
    build_demo_database,
    load_data_policy,
    sqlite_url,
)
from dataagent.adapters.agents.sql.catalog import SqlSchemaCatalog
from dataagent.adapters.agents.sql.semantic import SemanticFileError, SemanticLayer, load_semantic
from dataagent.adapters.agents.sql_step import EstimateRules
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import AgentEngine
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.application.verified import ExampleFinder, VerifiedQueryStore
from dataagent.entrypoints.settings import AGENT_KEYWORDS, Settings

log = logging.getLogger("dataagent")


class EngineLoadError(RuntimeError):
    """The configured engine or data source cannot be built; the message says which setting to fix."""


def demo_database_path() -> str:
    """Where the demo sample database lives: built once per version, shared by every worker."""
    return os.path.join(tempfile.gettempdir(), f"dataagent-demo-{__version__}.sqlite3")


def build_data_source(settings: Settings) -> SqlDatabase:
    """DATAAGENT_DATA_URL (read-only unless DATAAGENT_SQL_READ_ONLY=false), else the demo database (read-only)."""
    limits: dict[str, Any] = {
        "max_rows": settings.sql_max_rows, "timeout_s": settings.sql_timeout,
        "max_result_bytes": settings.sql_max_result_bytes, "max_cell_bytes": settings.sql_max_cell_bytes,
    }
    if settings.data_url is None:
        path = demo_database_path()
        build_demo_database(path)
        return SqlDatabase(sqlite_url(path), **limits)
    url = settings.data_url.get_secret_value()
    try:
        return SqlDatabase(url, read_only=settings.sql_read_only, **limits)
    except Exception as exc:
        shown = _safe_url(url)
        raise EngineLoadError(f"DATAAGENT_DATA_URL={shown} cannot be used: {type(exc).__name__}: {exc}") from None


def load_semantic_setting(settings: Settings) -> SemanticLayer | None:
    """DATAAGENT_SEMANTIC_FILE's business context, or None; EngineLoadError (one line) for a bad file."""
    if settings.semantic_file is None:
        return None
    try:
        return load_semantic(settings.semantic_file)
    except SemanticFileError as exc:
        raise EngineLoadError(str(exc)) from None


def estimate_rules(settings: Settings) -> EstimateRules:
    return EstimateRules(settings.sql_max_estimated_rows, settings.sql_estimate_timeout)


@dataclass(frozen=True, slots=True)
class DataContext:
    """The data the agent answers from, built once for the engine and the schema catalog: the data source (one
    pool), the data policy and the semantic file, each file read and checked once."""

    database: SqlDatabase
    policy: DataPolicy | None
    semantic: SemanticLayer | None


def build_data_context(settings: Settings) -> DataContext:
    return DataContext(build_data_source(settings), data_policy(settings), load_semantic_setting(settings))


def build_catalog(data: DataContext) -> SqlSchemaCatalog:
    """What GET /api/v1/schema reads: the data source, with the semantic file's words, under the data policy."""
    return SqlSchemaCatalog(data.database, data.semantic, data.policy)


def build_example_finder(
    settings: Settings, store: VerifiedQueryStore, data: Callable[[], DataContext]
) -> ExampleFinder | None:
    """The verified queries like a question, for the demo and LLM engines (others get none, and `data` is not
    built for them)."""
    if settings.agent not in AGENT_KEYWORDS or settings.verified_query_examples == 0:
        return None
    context = data()
    return Fts5ExampleFinder(store, settings.verified_query_examples, database=context.database,
                             policy=context.policy)


def resolve_agent(settings: Settings) -> str:
    """The engine to run: `auto` becomes `llm` when an LLM API key is set, else `demo` (and says so)."""
    if settings.agent != "auto":
        return settings.agent
    if settings.llm_api_key is not None:
        log.info("DATAAGENT_AGENT=auto: an LLM API key is set, using the llm engine (model %s)", settings.llm_model)
        return "llm"
    log.info("DATAAGENT_AGENT=auto: no DATAAGENT_LLM_API_KEY or OPENAI_API_KEY, using the demo engine")
    return "demo"


def build_engine(
    settings: Settings, data: DataContext | None = None, audit: AuditTrail | None = None,
    telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING,
) -> AgentEngine:
    """The agent engine DATAAGENT_AGENT names; the demo and LLM engines answer from `data` (built from the
    settings if not given), record each SQL statement in `audit` and report statements and LLM calls to
    `telemetry`."""
    choice = resolve_agent(settings)
    if choice == "demo":
        data = data or build_data_context(settings)
        on_demo = settings.data_url is None
        return DemoEngine(
            chunks=settings.demo_chunks, delay_ms=settings.demo_chunk_delay_ms,
            database=data.database, hitl_policy=settings.hitl_policy,
            place="the demo database" if on_demo else "the database", data_policy=data.policy,
            semantic=data.semantic, estimates=estimate_rules(settings), audit=audit, telemetry=telemetry,
            tracing=tracing,
        )
    if choice == "llm":
        data = data or build_data_context(settings)
        return OpenAiEngine(
            llm_config(settings), data.database, hitl_policy=settings.hitl_policy,
            data_policy=data.policy, semantic=data.semantic, estimates=estimate_rules(settings), audit=audit,
            telemetry=telemetry, tracing=tracing,
        )
    return _custom_engine(choice, settings)


def data_policy(settings: Settings) -> DataPolicy | None:
    """The policy file DATAAGENT_DATA_POLICY names, validated; EngineLoadError (one line) if it is wrong."""
    if settings.data_policy is None:
        return None
    try:
        policy = load_data_policy(settings.data_policy)
    except DataPolicyError as exc:
        raise EngineLoadError(f"DATAAGENT_DATA_POLICY={exc}") from None
    log.info("DATAAGENT_DATA_POLICY=%s: entries %s", settings.data_policy, ", ".join(policy.entries) or "none")
    return policy


def llm_config(settings: Settings) -> LlmConfig:
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    return LlmConfig(
        model=settings.llm_model, base_url=settings.llm_base_url, api_key=key, timeout_s=settings.llm_timeout,
        max_steps=settings.llm_max_steps, retries=settings.llm_retries,
        history_messages=settings.llm_history_messages, history_chars=settings.llm_history_chars,
    )


def load_factory(spec: str) -> Callable[[Settings], Any]:
    """The callable `package.module:attr` names; EngineLoadError with the reason if it cannot be had."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise EngineLoadError(
            f"DATAAGENT_AGENT={spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
            "is it installed or on PYTHONPATH?"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise EngineLoadError(f"DATAAGENT_AGENT={spec}: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise EngineLoadError(f"DATAAGENT_AGENT={spec}: {attr_path!r} is not callable")
    return target  # type: ignore[no-any-return]


def check_engine_settings(settings: Settings) -> None:
    """Fail early (EngineLoadError) if the engine factory cannot be imported, the semantic file is bad or the
    data URL's driver is missing."""
    if settings.agent not in AGENT_KEYWORDS:
        load_factory(settings.agent)
    data_policy(settings)
    load_semantic_setting(settings)
    if settings.data_url is not None:
        url = settings.data_url.get_secret_value()
        try:
            make_url(url).get_dialect().import_dbapi()
        except Exception as exc:
            shown = _safe_url(url)
            raise EngineLoadError(f"DATAAGENT_DATA_URL={shown} cannot be used: {type(exc).__name__}: {exc}") from None


def _custom_engine(spec: str, settings: Settings) -> AgentEngine:
    factory = load_factory(spec)
    try:
        engine = factory(settings)
    except Exception as exc:
        raise EngineLoadError(f"DATAAGENT_AGENT={spec}: the factory failed ({type(exc).__name__}: {exc})") from exc
    missing = [n for n in ("stream", "close") if not callable(getattr(engine, n, None))]
    if missing or not isinstance(getattr(engine, "name", None), str):
        raise EngineLoadError(
            f"DATAAGENT_AGENT={spec}: the factory returned {type(engine).__name__}, which is not an agent engine "
            "(it needs a `name` string, `stream(ctx)` and `async close()`)"
        )
    log.info("DATAAGENT_AGENT=%s: using the custom engine %r", spec, engine.name)
    return engine  # type: ignore[no-any-return]


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"
