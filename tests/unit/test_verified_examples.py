"""Fts5ExampleFinder on the in-memory store: which verified queries a question gets, in which order, and when
the index notices a change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from dataagent.adapters.agents.examples import Fts5ExampleFinder, search_terms
from dataagent.adapters.memory.feedback import InMemoryVerifiedQueryStore
from dataagent.domain.errors import StoreUnavailableError
from dataagent.domain.feedback import VerifiedQuery

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def verified(query_id: str, question: str) -> VerifiedQuery:
    return VerifiedQuery(query_id, question, f"SELECT '{query_id}'", "admin", NOW, NOW)


async def store_of(*questions: str) -> InMemoryVerifiedQueryStore:
    store = InMemoryVerifiedQueryStore()
    for n, question in enumerate(questions, start=1):
        await store.add_verified(verified(f"vq{n}", question))
    return store


async def ids(finder: Fts5ExampleFinder, question: str) -> list[str]:
    return [q.query_id for q in await finder.similar(question, None)]


class UnreadableStore(InMemoryVerifiedQueryStore):
    """The memory store whose revision cannot be read, as a MySQL store that lost its server."""

    async def verified_revision(self) -> int:
        raise StoreUnavailableError()


def test_common_words_numbers_and_repeats_are_not_searched() -> None:
    assert search_terms("How many ORDERS were there in 2024, per order status?") == ["orders", "order", "status"]
    assert search_terms("what is the") == []
    assert search_terms("北京的客户") == ["北京", "京的", "的客", "客户"]


async def test_a_similar_question_gets_the_verified_query_and_a_dissimilar_one_none() -> None:
    finder = Fts5ExampleFinder(await store_of("Which cities have the most customers?", "Revenue per month"))
    assert await ids(finder, "which city has most customers") == ["vq1"]  # stemmed: city ~ cities
    assert await ids(finder, "monthly revenue please") == ["vq2"]
    assert await ids(finder, "list the products in the Sports category") == []
    assert await ids(finder, "how many are there?") == []  # only common words


async def test_the_best_ranked_come_first_and_at_most_the_limit() -> None:
    store = await store_of("orders by status", "orders and revenue by customer city", "orders", "customer list")
    finder = Fts5ExampleFinder(store, limit=2)
    found = await ids(finder, "customer orders by city")
    assert len(found) == 2 and found[0] == "vq2"
    assert await ids(Fts5ExampleFinder(store, limit=0), "customer orders by city") == []


async def test_chinese_questions_match_on_pairs_of_characters() -> None:
    finder = Fts5ExampleFinder(await store_of("每个城市的客户数量", "各类产品的销售额"))
    assert await ids(finder, "北京有多少客户") == ["vq1"]
    assert await ids(finder, "销售额最高的产品") == ["vq2"]
    assert await ids(finder, "多少订单") == []


async def test_an_added_edited_or_deleted_verified_query_counts_from_the_next_question() -> None:
    store = await store_of("Revenue per month")
    finder = Fts5ExampleFinder(store)
    assert await ids(finder, "top customers") == []
    await store.add_verified(verified("vq9", "Top customers by revenue"))
    assert await ids(finder, "top customers") == ["vq9"]
    await store.replace_verified(replace(verified("vq9", "Top products"), updated_at=NOW))
    assert await ids(finder, "top customers") == ["vq9"]  # "top" still matches
    assert await ids(finder, "customers") == []
    await store.delete_verified("vq9")
    assert await ids(finder, "top products") == []


async def test_a_store_that_cannot_be_read_gives_no_examples() -> None:
    store = UnreadableStore()
    await store.add_verified(verified("vq1", "Revenue per month"))
    assert await ids(Fts5ExampleFinder(store), "revenue per month") == []
