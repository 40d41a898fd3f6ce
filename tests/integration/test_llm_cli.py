"""The real command line with the LLM settings: `auto` picks the LLM when a key is set; bad engines stop start-up."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

import dataagent
from tests.fakes.openai_server import FakeOpenAI
from tests.support import cli_command, free_port, spawn, wait_healthy

pytestmark = pytest.mark.integration

SRC = Path(dataagent.__file__).resolve().parents[1]
PYTHONPATH = f"{SRC}:{SRC.parent}"
SECRET = "sk-cli-SECRET-5a4b3c2d1e"


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAGENT_", "OPENAI_"))}
    return env | {"PYTHONPATH": PYTHONPATH} | variables


async def test_auto_with_an_openai_key_serves_answers_from_the_llm(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_text("Hello from the model.", chunks=3)
    port = free_port()
    env = {"PYTHONPATH": PYTHONPATH, "DATAAGENT_API_KEYS": "t:key-123", "DATAAGENT_LLM_BASE_URL": fake_openai.base_url,
           "DATAAGENT_LLM_MODEL": "fake-model", "OPENAI_API_KEY": SECRET}
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], env, port)
    try:
        await asyncio.to_thread(wait_healthy, server)
        async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": "key-123"}, timeout=20) as c:
            assert (await c.get("/api/v1/health")).json()["agent"] == "llm"
            body = (await c.post("/api/v1/chat", json={"message": "Hello?"})).json()
    finally:
        server.stop()
    assert body["status"] == "completed" and body["content"] == "Hello from the model."
    assert fake_openai.requests[0].authorization == f"Bearer {SECRET}"
    assert "DATAAGENT_AGENT=auto: an LLM API key is set, using the llm engine (model fake-model)" in server.text()
    assert SECRET not in server.text()


@pytest.mark.parametrize(("variables", "words"), [
    ({"DATAAGENT_AGENT": "my_engines:make_engine"}, "DATAAGENT_AGENT=my_engines:make_engine: cannot import"),
    ({"DATAAGENT_AGENT": "gpt-4"}, "invalid setting DATAAGENT_AGENT"),
    ({"DATAAGENT_DATA_URL": "postgresql+nosuchdriver://u:hunter2@h/db"}, "DATAAGENT_DATA_URL=postgresql+nosuchdriver"),
])
def test_start_up_stops_with_one_clear_line_for_an_unusable_engine(variables: dict[str, str], words: str) -> None:
    done = subprocess.run(cli_command() + ["--port", str(free_port())], env=clean_env(**variables),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr and "hunter2" not in done.stderr
