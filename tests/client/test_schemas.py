"""The client's models against the server's own schemas: PROTOCOL.md's event table, the server's event types,
its OpenAPI components, and the frames a real server sends. A change on one side alone fails here."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dataagent.client import AsyncDataAgentClient
from dataagent.client import bodies as rest
from dataagent.client import models as wire
from dataagent.domain.events import EventType
from dataagent.entrypoints.app import create_app
from tests.support import KEY_A, live_server, make_settings, ws_connect

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
SQL = "select name, city from customers order by id limit 5"


def protocol_events() -> dict[str, set[str]]:
    """event_type -> the data keys PROTOCOL.md's server-frame table names for it."""
    text = PROTOCOL.read_text().split("| event_type | data |", 1)[1].split("\n\n", 1)[0]
    events: dict[str, set[str]] = {}
    for row in text.strip().splitlines()[1:]:
        cells = row.split("|")
        name = re.fullmatch(r"\s*`(\w+)`(?: \*\(ext\)\*)?\s*", cells[1])
        assert name, row
        cell = "|".join(cells[2:])
        spans = [s for s in re.findall(r"`([^`]*)`", cell) if "{" in s or re.match(r"\w+: ", s)]
        keys = {k for s in spans for k in re.findall(r"(?:^|[{,]\s*)([a-z_]+)\??\s*(?=[,}:=]|$)", s)}
        events[name.group(1)] = keys - {"table"}
    return events


def field_names(model: type[BaseModel]) -> set[str]:
    """The fields of a model and of every model nested in it."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for inner in nested_models(info.annotation):
            names |= field_names(inner)
    return names


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]
    return []


def test_protocol_md_names_every_event_type_the_server_has_and_the_client_has_a_model_for_each() -> None:
    documented = set(protocol_events())
    assert {e.value for e in EventType} <= documented
    assert documented == set(wire.EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(protocol_events()))
def test_every_documented_key_of_an_event_is_a_field_of_its_client_model(event_type: str) -> None:
    model = wire.EVENT_TYPES[event_type].model_fields["data"].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    assert protocol_events()[event_type] <= field_names(model)


def test_the_frame_envelope_of_protocol_md_is_the_client_event_base() -> None:
    envelope = re.search(r"Server → client frames: `\{(.*?)\}`", PROTOCOL.read_text())
    assert envelope
    keys = set(re.findall(r'"(\w+)"', envelope.group(1)))
    assert keys == set(wire.BaseEvent.model_fields)


OPENAPI_PAIRS = {
    "ChatResponse": rest.ChatResult, "RunAccepted": rest.RunHandle, "CancelResponse": rest.CancelResult,
    "SessionInfo": rest.SessionInfo, "SessionList": rest.SessionPage, "MessageOut": rest.Message,
    "MessageList": rest.MessagePage, "Health": rest.Health, "HealthChecks": rest.HealthChecks,
    "ErrorBody": rest.ErrorBody,
}


@pytest.mark.parametrize("component", sorted(OPENAPI_PAIRS))
def test_the_servers_openapi_component_has_exactly_the_client_models_fields(component: str) -> None:
    schema = create_app(make_settings()).openapi()["components"]["schemas"][component]
    model = OPENAPI_PAIRS[component]
    assert set(schema["properties"]) == set(model.model_fields)
    required = {name for name, info in model.model_fields.items() if info.is_required()}
    assert required <= set(schema["properties"])
    for name, prop in schema["properties"].items():
        if "enum" in prop:
            assert set(prop["enum"]) == set(typing.get_args(model.model_fields[name].annotation)), name


def assert_no_unknown_keys(model: BaseModel, where: str = "") -> None:
    """Every key the server sent is a field the client declares (extras are allowed, never expected here)."""
    if not isinstance(model, wire.UnknownEvent):
        assert not model.model_extra, f"{where}{type(model).__name__}: {model.model_extra}"
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                assert_no_unknown_keys(item, f"{where}{name}.")


async def test_every_frame_a_real_server_sends_parses_into_a_client_model_with_no_unknown_key() -> None:
    seen: list[wire.BaseEvent] = []
    async with live_server() as srv, AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as client:
        async for event in client.stream(SQL, session_id="schema-ws"):
            seen.append(event)
            if isinstance(event, wire.HitlEvent):
                await event.edit("select name from customers order by id limit 2")
        async for event in client.stream("Which city has the most customers?", transport="sse"):
            seen.append(event)
        result = await client.ask("select 1 from customers limit 1")
        seen += result.events
        rejected = await result.interrupt.reject("no") if result.interrupt else None
        assert rejected is not None
        seen += rejected.events
        async with ws_connect(srv, "schema-ws") as ws:
            await ws.send("ping")
            frames = await ws.until("pong")
            await ws.send("resume", after_seq=frames[0]["data"]["last_seq"] - 1)
            frames += await ws.until("resumed")
            await ws.send("cancel")
            frames += await ws.until("error")
        async with ws_connect(srv, "schema-queue") as ws:  # a question queued behind one awaiting approval
            await ws.send("chat", message=SQL)
            frames += await ws.until("hitl")
            await ws.send("chat", message="and then?", multitask_strategy="enqueue")
            frames += await ws.until("queued")
            await ws.send("cancel")
        seen += [wire.parse_event(frame) for frame in frames]
        for model in [*seen, await client.session("schema-ws"), await client.health()]:
            assert_no_unknown_keys(model)
        async for message in client.history("schema-ws"):
            assert_no_unknown_keys(message)
    kinds = {e.event_type for e in seen}
    assert kinds >= {e.value for e in EventType} | {"resumed"}, kinds
    assert not any(isinstance(e, wire.UnknownEvent) for e in seen)
