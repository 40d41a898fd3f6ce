"""The verified queries most like a question, ranked by SQLite FTS5's bm25 over their questions, in process.

The index is rebuilt when the store's revision moves (read on every question: one row), so a verified query
added, edited or deleted through any worker is used, or no longer, from the next question on. A question's
words (lower-cased, without common words such as "how many" or "the") are matched with OR and the porter
stemmer ("orders" finds "order"); Chinese, Japanese and Korean text counts in pairs of characters. A question
sharing no such word with a verified one gets none of it. Under a
data policy a verified query whose SQL the principal may not run is never shown to its runs.
"""

from __future__ import annotations

import logging
import re
import sqlite3

from dataagent.adapters.agents.sql.database import SqlDatabase
from dataagent.adapters.agents.sql.errors import SqlToolError
from dataagent.adapters.agents.sql.policy import DataPolicy
from dataagent.adapters.agents.sql.scope import PolicyScope
from dataagent.application.verified import ExampleFinder, VerifiedQueryStore
from dataagent.domain.errors import DataAgentError
from dataagent.domain.feedback import VerifiedQuery

log = logging.getLogger("dataagent.examples")

MAX_TERMS = 32
MAX_TERM_CHARS = 64
TOKENIZER = "porter unicode61 remove_diacritics 2"
_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
STOP_WORDS = frozenset("""
a about all an and any are as at be been by can could did do does each for from get give had has have how i in
into is it its list me my of on or our per please show some tell than that the their them there these this those
to us was we were what when where which who whom why will with would you your many much
""".split()) | frozenset("多少 每个 哪些 什么 哪个 一下 我们 所有 显示 列出 查询 请问 是否 的是".split())


def words(text: str) -> str:
    """`text` as the index sees it: runs of Chinese, Japanese or Korean characters (written without spaces)
    become their overlapping pairs of characters ("客户数量" -> "客户 户数 数量")."""
    return _CJK.sub(lambda run: " " + " ".join(_pairs(run.group())) + " ", text)


def _pairs(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


def search_terms(question: str) -> list[str]:
    """The words of `question` the index is searched for, in order, each once."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(words(question.lower())):
        if 1 < len(word) <= MAX_TERM_CHARS and word not in STOP_WORDS and not word.isdigit():
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


class Fts5ExampleFinder(ExampleFinder):
    """Up to `limit` verified queries for a question; none when the store cannot be read (the run goes on)."""

    def __init__(
        self, store: VerifiedQueryStore, limit: int = 3, *, database: SqlDatabase | None = None,
        policy: DataPolicy | None = None,
    ) -> None:
        self._store = store
        self._limit = limit
        self._scope = PolicyScope(database, policy) if database is not None and policy is not None else None
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE vq USING fts5(question, tokenize='{TOKENIZER}')")
        self._queries: list[VerifiedQuery] = []
        self._revision: int | None = None

    async def similar(self, question: str, principal: str | None) -> list[VerifiedQuery]:
        terms = search_terms(question)
        if self._limit <= 0 or not terms:
            return []
        try:
            await self._refresh()
        except DataAgentError as exc:
            log.warning("verified queries not read (%s): this question gets no examples", exc.code)
            return []
        if not self._queries:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        try:
            ranked = self._db.execute(
                "SELECT rowid FROM vq WHERE vq MATCH ? ORDER BY bm25(vq), rowid LIMIT ?", (match, self._limit * 4)
            ).fetchall()
        except sqlite3.Error as exc:  # never expected of quoted words; the run goes on without examples
            log.warning("verified queries not searched (%s): this question gets no examples", exc)
            return []
        found: list[VerifiedQuery] = []
        for (rowid,) in ranked:
            query = self._queries[rowid - 1]
            if len(found) < self._limit and await self._allowed(query, principal):
                found.append(query)
        return found

    async def _refresh(self) -> None:
        revision = await self._store.verified_revision()  # read before the queries: never newer than them
        if revision == self._revision:
            return
        queries = await self._store.all_verified()
        with self._db:
            self._db.execute("DELETE FROM vq")
            self._db.executemany("INSERT INTO vq(rowid, question) VALUES (?, ?)",
                                 [(n, words(q.question)) for n, q in enumerate(queries, start=1)])
        self._queries, self._revision = queries, revision

    async def _allowed(self, query: VerifiedQuery, principal: str | None) -> bool:
        if self._scope is None or self._scope.entry(principal) is None:
            return True
        try:
            analysis = await self._scope.apply(await self._scope.database.analyse(query.sql), principal)
        except (DataAgentError, SqlToolError):
            return False
        return analysis.refusal is None
