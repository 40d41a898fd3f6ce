"""DATAAGENT_AGENT picks the engine: auto (llm with a key, else demo), demo, llm, or a package.module:factory."""

from __future__ import annotations

import logging
import os

import pytest

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.llm import OpenAiEngine
from dataagent.entrypoints.engines import (
    EngineLoadError,
    build_data_source,
    build_engine,
    check_engine_settings,
    llm_config,
)
from dataagent.entrypoints.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tests.fakes.custom_engines import EchoEngine
from tests.unit.harness import build_core


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith((ENV_PREFIX, "OPENAI_")):
            monkeypatch.delenv(name)
    return monkeypatch


async def built(settings: Settings) -> object:
    engine = build_engine(settings)
    await engine.close()
    return engine


async def test_auto_without_a_key_picks_the_demo_engine_and_says_so(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dataagent")
    engine = await built(load_settings())
    assert isinstance(engine, DemoEngine)
    assert "DATAAGENT_AGENT=auto: no DATAAGENT_LLM_API_KEY or OPENAI_API_KEY, using the demo engine" in caplog.text


async def test_auto_with_an_llm_key_picks_the_llm_engine_and_says_so(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dataagent")
    clean_env.setenv("DATAAGENT_LLM_API_KEY", "sk-dataagent-key")
    engine = await built(load_settings())
    assert isinstance(engine, OpenAiEngine) and engine.name == "llm"
    assert engine.config.api_key == "sk-dataagent-key"
    assert "using the llm engine (model gpt-4o-mini)" in caplog.text
    assert "sk-dataagent-key" not in caplog.text


async def test_the_openai_api_key_is_the_fallback(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-openai-key")
    engine = await built(load_settings())
    assert isinstance(engine, OpenAiEngine) and engine.config.api_key == "sk-openai-key"
    clean_env.setenv("DATAAGENT_LLM_API_KEY", "sk-ours")
    assert llm_config(load_settings()).api_key == "sk-ours"


async def test_demo_and_llm_are_chosen_explicitly(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-openai-key")
    assert isinstance(await built(load_settings(agent="demo")), DemoEngine)
    clean_env.delenv("OPENAI_API_KEY")
    engine = await built(load_settings(agent="LLM"))
    assert isinstance(engine, OpenAiEngine) and engine.config.api_key is None  # a local server needs none


def test_the_llm_settings_reach_the_engine_config(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {"BASE_URL": "http://127.0.0.1:11434/v1", "MODEL": "qwen2.5", "TIMEOUT": "12",
                        "MAX_STEPS": "3", "RETRIES": "0", "HISTORY_MESSAGES": "6", "HISTORY_CHARS": "900"}.items():
        clean_env.setenv(f"DATAAGENT_LLM_{name}", value)
    config = llm_config(load_settings())
    assert (config.base_url, config.model, config.timeout_s, config.max_steps, config.retries) == (
        "http://127.0.0.1:11434/v1", "qwen2.5", 12, 3, 0)
    assert (config.history_messages, config.history_chars) == (6, 900)
    assert config.where == "http://127.0.0.1:11434/v1"


def test_the_new_settings_have_their_documented_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.agent == "auto" and settings.llm_base_url is None and settings.llm_api_key is None
    assert (settings.llm_model, settings.llm_timeout, settings.llm_max_steps, settings.llm_retries) == (
        "gpt-4o-mini", 60, 8, 2)
    assert (settings.llm_history_messages, settings.llm_history_chars) == (40, 24000)
    assert settings.data_url is None and settings.sql_read_only is True
    assert llm_config(settings).where == "https://api.openai.com/v1"


def test_blank_values_count_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "DATA_URL"):
        clean_env.setenv(ENV_PREFIX + name, "  ")
    settings = load_settings()
    assert settings.llm_base_url is None and settings.llm_api_key is None and settings.data_url is None


@pytest.mark.parametrize("value", ["gpt", "tests.fakes:", ":make", "a b:c", "tests/fakes.py:make"])
def test_an_agent_that_is_no_keyword_nor_a_factory_path_stops_start_up(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    clean_env.setenv("DATAAGENT_AGENT", value)
    with pytest.raises(SettingsError, match="DATAAGENT_AGENT: .*must be auto, demo, llm or package.module:factory"):
        load_settings()


async def test_a_factory_builds_the_users_engine_from_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(agent="tests.fakes.custom_engines:make_echo", llm_model="m1")
    check_engine_settings(settings)
    engine = build_engine(settings)
    assert isinstance(engine, EchoEngine) and engine.name == "echo"
    outcome = await build_core(engine).chat.chat("alice", "hi", "s1")
    assert outcome.status == "completed" and outcome.content == "[m1] hi"
    nested = build_engine(load_settings(agent="tests.fakes.custom_engines:Factories.echo"))
    assert isinstance(nested, EchoEngine)


@pytest.mark.parametrize(("spec", "words"), [
    ("tests.fakes.no_such_module:make", "cannot import 'tests.fakes.no_such_module' (ModuleNotFoundError"),
    ("tests.fakes.custom_engines:missing", "has no attribute 'missing'"),
    ("tests.fakes.custom_engines:NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
    ("tests.fakes.custom_engines:not_an_engine", "returned object, which is not an agent engine"),
    ("tests.fakes.custom_engines:broken", "the factory failed (RuntimeError: no licence)"),
])
def test_a_factory_that_cannot_give_an_engine_is_a_clear_start_up_error(
    clean_env: pytest.MonkeyPatch, spec: str, words: str
) -> None:
    with pytest.raises(EngineLoadError) as caught:
        build_engine(load_settings(agent=spec))
    assert str(caught.value).startswith(f"DATAAGENT_AGENT={spec}: ") and words in str(caught.value)


async def test_the_data_url_is_opened_read_only_unless_told_otherwise(
    clean_env: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/data.sqlite3"
    read_only = build_data_source(load_settings(data_url=url))
    writable = build_data_source(load_settings(data_url=url, sql_read_only=False))
    demo = build_data_source(load_settings(sql_read_only=False))
    try:
        assert read_only.read_only and "mode=ro" in read_only.url
        assert not writable.read_only
        assert demo.read_only and await demo.list_tables() == ["customers", "orders", "products"]
    finally:
        for db in (read_only, writable, demo):
            await db.close()


def test_a_data_url_without_its_driver_is_a_clear_error_without_the_password(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_url="nosuchdb+driver://reader:hunter2@db.example/sales")
    with pytest.raises(EngineLoadError) as caught:
        check_engine_settings(settings)
    message = str(caught.value)
    assert message.startswith("DATAAGENT_DATA_URL=nosuchdb+driver://reader:***@db.example/sales cannot be used")
    assert "hunter2" not in message
    with pytest.raises(EngineLoadError, match="cannot be used") as built_error:
        build_data_source(settings)
    assert "hunter2" not in str(built_error.value)
