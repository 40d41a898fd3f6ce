"""The README's LLM sections are true: the worked example is what the server sends; the custom engine runs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dataagent.entrypoints.engines import build_engine
from dataagent.entrypoints.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.support import live_server, make_settings
from tests.unit.harness import build_core

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
_IDS = {"run_id": "run_…", "message_id": "msg_…", "interrupt_id": "int_…", "expires_at": "…"}


def readme_block(name: str) -> str:
    match = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)\n```", README.read_text(), re.DOTALL)
    assert match, f"README has no block {name}"
    return match.group(1)


def shown(event: dict[str, Any]) -> str:
    """An event as the README's transcript writes it: `← type {data}` with ids shortened."""
    data = {k: _IDS.get(k, v) for k, v in event["data"].items()}
    return f"← {event['event_type']} {json.dumps(data, ensure_ascii=False)}"


def transcript_json(line: str) -> dict[str, Any]:
    return dict(json.loads(line.split(" ", 2)[2]))


async def test_the_worked_example_is_what_the_server_sends(fake_openai: FakeOpenAI) -> None:
    lines = readme_block("llm-example").splitlines()
    calls = [transcript_json(line) for line in lines if line.startswith("← tool_call ")]
    sql = calls[3]["tool_args"]["sql"]
    asks = [line for line in lines if line.startswith("→ POST /api/v1/chat {")]
    question = json.loads(asks[0].split(" ", 3)[3])["message"]
    answer = re.search(r'"content": "(.*)"\)$', lines[-1]).group(1)  # type: ignore[union-attr]
    fake_openai.add_tool_calls([("call_1", "list_tables", {})], prompt_tokens=300, completion_tokens=10)
    fake_openai.add_tool_calls([("call_2", "describe_table", {"table": "orders"}),
                                ("call_3", "describe_table", {"table": "products"})],
                               prompt_tokens=450, completion_tokens=20)
    fake_openai.add_tool_calls([("call_4", "run_sql", {"sql": sql})], prompt_tokens=700, completion_tokens=25)
    fake_openai.add_text(answer, chunks=4, prompt_tokens=878, completion_tokens=12)

    settings = make_settings(agent="llm", llm_base_url=fake_openai.base_url, llm_api_key="k")
    async with live_server(settings) as srv, srv.client() as c:
        asked = (await c.post("/api/v1/chat", json={"message": question, "session_id": "shop"})).json()
        interrupt_id = asked["events"][-1]["data"]["interrupt_id"]
        decided = (await c.post("/api/v1/chat/shop/hitl",
                                json={"interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]})).json()

    assert asked["status"] == "awaiting_approval" and decided["status"] == "completed"
    assert decided["content"] == answer
    sent = {shown(event) for event in asked["events"] + decided["events"]}
    cut = ("\\n…", "← text …")
    checked = [line for line in lines if line.startswith("← ") and not any(c in line for c in cut)]
    assert len(checked) == 12
    for line in checked:
        assert line in sent, line


def test_the_custom_engine_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its tool call, its result, and an approval, an edit (the edited arguments are used) and a reject."""
    (tmp_path / "my_engine.py").write_text(readme_block("custom-engine"))
    monkeypatch.syspath_prepend(str(tmp_path))

    def of(kind: str, events: list[Any]) -> list[dict[str, Any]]:
        return [e.data for e in events if e.event_type == kind]

    async def conversation() -> list[Any]:
        engine = build_engine(Settings(agent="my_engine:make_engine"))
        core = build_core(engine)
        answers = []
        for question, decision in (("hello world", {"type": "approve"}),
                                   ("hello world", {"type": "edit", "args": {"text": "good bye"}}),
                                   ("psst", {"type": "reject", "message": "not now"})):
            asked = await core.chat.chat("me", question, "s1")
            assert asked.status == "awaiting_approval"
            call = of("tool_call", asked.events)[0]
            assert (call["tool_name"], call["tool_args"]) == ("shout", {"text": question})
            assert asked.events[-1].data["action"] == {"name": "shout", "args": {"text": question},
                                                       "description": "Shout it?"}
            answers.append(await core.chat.decide_and_wait("me", "s1", None, [decision]))
        await engine.close()
        return answers

    approved, edited, rejected = asyncio.run(conversation())
    assert approved.content == "HELLO WORLD " and edited.content == "GOOD BYE "
    assert [(r["result"], r["status"]) for r in of("tool_result", approved.events)] == [("HELLO WORLD", "success")]
    assert [(r["result"], r["status"]) for r in of("tool_result", edited.events)] == [("GOOD BYE", "success")]
    assert rejected.content == "(quietly) psst"
    assert [(r["result"], r["status"]) for r in of("tool_result", rejected.events)] == [
        ("Not shouted: not now", "error")]
