"""The semantic file: the example loads, a bad file is one line naming the place, the model's text is bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.llm.completion import ToolCallDraft
from dataagent.adapters.agents.llm.tools import DataTools
from dataagent.adapters.agents.sql import SqlDatabase, build_demo_database, sqlite_url
from dataagent.adapters.agents.sql.context import CUT_NOTE, prompt_context
from dataagent.adapters.agents.sql.semantic import SemanticFileError, load_semantic, parse_semantic
from dataagent.adapters.agents.sql_step import SqlStep
from dataagent.domain.events import TextDelta
from tests.estimates import Approver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "semantic.yaml"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


def test_the_example_file_loads_with_every_part_of_the_format() -> None:
    layer = load_semantic(str(EXAMPLE))
    assert set(layer.tables) == {"customers", "products", "orders"}
    orders = layer.table("ORDERS")
    assert orders is not None and "sales" in orders.synonyms
    status = orders.column("status")
    assert status is not None and "cancelled" in status.examples
    assert layer.joins_of("customers")[0].text().startswith("orders.customer_id = customers.id")
    assert [t.name for t in layer.terms] == ["revenue", "active customer"]


@pytest.mark.parametrize(
    ("change", "place"),
    [
        (lambda d: d["tables"]["orders"]["columns"].__setitem__(2, {"description": "no name"}),
         "tables.orders.columns[2].name: Field required"),
        (lambda d: d["tables"]["orders"].__setitem__("colums", []), "tables.orders.colums: Extra inputs"),
        (lambda d: d["relationships"][1].__setitem__("to", "products"), "relationships[1].to: Value error"),
        (lambda d: d["tables"]["customers"]["columns"][3].__setitem__("examples", {"a": 1}),
         "tables.customers.columns[3].examples: "),
        (lambda d: d["terms"][0].pop("definition"), "terms[0].definition: Field required"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_place(change: Any, place: str, tmp_path: Path) -> None:
    data = _example()
    change(data)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SemanticFileError) as caught:
        load_semantic(str(path))
    message = str(caught.value)
    assert message.startswith(f"semantic file x.yaml: {place}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tables: [unclosed", "semantic file x.yaml: line 1:"),
        ("- just\n- a list\n", "semantic file x.yaml: must be a mapping with a `tables` key"),
        ("", "semantic file x.yaml: must be a mapping"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_yaml_is_one_line(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SemanticFileError, match="^" + expected.replace("`", ".").replace("(", ".")):
        load_semantic(str(path))


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SemanticFileError, match=r"^semantic file nowhere.yaml: cannot be read"):
        load_semantic(str(tmp_path / "nowhere.yaml"))


def test_the_prompt_context_carries_descriptions_synonyms_examples_joins_and_terms() -> None:
    text = prompt_context(load_semantic(str(EXAMPLE)), 100_000)
    for words in ("One row per registered customer", "also called: purchases, sales", "'shipped'",
                  "orders.product_id = products.id", "Term 'revenue'"):
        assert words in text


@pytest.mark.parametrize("budget", [0, 50, 400, 1000])
def test_the_prompt_context_stays_within_its_budget_cut_at_whole_lines(budget: int) -> None:
    layer = load_semantic(str(EXAMPLE))
    text = prompt_context(layer, budget)
    assert len(text) <= budget
    whole = prompt_context(layer, 100_000).splitlines()
    assert all(line in whole or line == CUT_NOTE for line in text.splitlines())


def test_an_empty_layer_adds_nothing_to_the_prompt() -> None:
    assert prompt_context(parse_semantic({"tables": {}}), 10_000) == ""


async def test_describe_table_carries_the_files_words(tmp_path: Path) -> None:
    path = str(tmp_path / "demo.sqlite3")
    build_demo_database(path)
    db = SqlDatabase(sqlite_url(path))
    tools = DataTools(SqlStep(db), load_semantic(str(EXAMPLE)))
    call = await tools.prepare(ToolCallDraft(id="c1", name="describe_table", arguments='{"table": "orders"}'))
    outcome = await tools.run(Approver().context(), call)
    await db.close()
    assert "Table orders (also called: purchases, sales, transactions): One row per order line" in outcome.text
    assert "- status TEXT NOT NULL — Where the order is" in outcome.text
    assert "Joins: orders.customer_id = customers.id" in outcome.text


def test_the_docs_example_is_a_valid_file() -> None:
    text = (EXAMPLE.parents[1] / "docs" / "SEMANTIC.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    layer = parse_semantic(yaml.safe_load(block), "SEMANTIC.md")
    assert layer.table("orders") is not None and layer.terms[0].name == "revenue"


async def test_the_demo_engine_names_the_described_tables() -> None:
    engine = DemoEngine(chunks=1, delay_ms=0, semantic=load_semantic(str(EXAMPLE)))
    ctx = Approver().context()
    answer = "".join([o.content async for o in engine.stream(ctx) if isinstance(o, TextDelta)])
    assert "The business context describes 3 tables (customers: One row per registered customer.;" in answer
