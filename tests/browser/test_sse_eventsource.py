"""A browser's own EventSource follows a background run over GET /api/v1/sessions/{id}/stream (key as `?api_key=`,
since an EventSource cannot set headers), from its `run_started` to its `done`; when the network drops it
reconnects by itself with `Last-Event-ID` and gets every later event once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.harness import Tab, stored_messages
from tests.support import KEY_A, ServerProcess
from tests.tcp_proxy import ThreadedTcpProxy

pytestmark = pytest.mark.integration

FOLLOW = """async ([key, question]) => {
  const asked = await fetch('/api/v1/chat', {method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-API-Key': key},
    body: JSON.stringify({message: question, wait: false})});
  const {session_id, run_id} = await asked.json();
  const events = [];
  await new Promise((resolve, reject) => {
    const source = new EventSource(`/api/v1/sessions/${session_id}/stream?api_key=${encodeURIComponent(key)}`);
    const kinds = ['connected', 'run_started', 'text', 'tool_call', 'tool_result', 'hitl', 'hitl_resolved', 'done'];
    for (const kind of kinds) {
      source.addEventListener(kind, (e) => {
        events.push({kind: e.type, id: e.lastEventId, frame: JSON.parse(e.data)});
        if (kind === 'done') { source.close(); resolve(); }
      });
    }
    source.addEventListener('error', (e) => { if (!e.data) { source.close(); reject(new Error('stream failed')); } });
  });
  return {status: asked.status, session_id, run_id, events};
}"""


def test_an_eventsource_in_the_browser_follows_a_whole_background_answer(tab: Tab) -> None:
    tab.page.goto(tab.base_url + "/ui/config")
    result: dict[str, Any] = tab.page.evaluate(FOLLOW, [KEY_A, "What can you do?"])
    assert result["status"] == 202
    events = result["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "connected" and kinds[1] == "run_started" and kinds[-1] == "done" and kinds.count("done") == 1
    live = events[1:]
    ids = [int(e["id"]) for e in live]
    assert ids == [e["frame"]["seq"] for e in live] == list(range(ids[0], ids[0] + len(ids)))
    assert all(e["frame"]["run_id"] == result["run_id"] for e in live)
    assert live[-1]["frame"]["data"]["status"] == "completed"
    text = "".join(e["frame"]["data"]["content"] for e in live if e["kind"] == "text")
    answer = [m for m in stored_messages(tab.srv, result["session_id"]) if m["role"] == "assistant"][-1]
    assert answer["content"] == text != ""


WATCH = """async ([key, question]) => {
  const asked = await fetch('/api/v1/chat', {method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-API-Key': key},
    body: JSON.stringify({message: question, wait: false})});
  const {session_id} = await asked.json();
  window.seen = {events: [], errors: 0, done: false};
  const source = new EventSource(`/api/v1/sessions/${session_id}/stream?api_key=${encodeURIComponent(key)}`);
  for (const kind of ['connected', 'run_started', 'text', 'done']) {
    source.addEventListener(kind, (e) => {
      window.seen.events.push({kind: e.type, id: e.lastEventId, frame: JSON.parse(e.data)});
      if (kind === 'done') { source.close(); window.seen.done = true; }
    });
  }
  source.addEventListener('error', () => { window.seen.errors += 1; });
  return session_id;
}"""


@pytest.fixture
def proxy(srv: ServerProcess) -> Iterator[ThreadedTcpProxy]:
    tcp = ThreadedTcpProxy("127.0.0.1", srv.port).start()
    try:
        yield tcp
    finally:
        tcp.close()


def test_an_eventsource_cut_off_reconnects_with_last_event_id_and_misses_nothing(
    context: Any, srv: ServerProcess, proxy: ThreadedTcpProxy
) -> None:
    tab = Tab(context, srv, base_url=f"http://127.0.0.1:{proxy.port}")
    tab.page.goto(tab.base_url + "/ui/config")
    session_id = tab.page.evaluate(WATCH, [KEY_A, "What if the network drops?"])
    tab.page.wait_for_function("() => window.seen.events.filter(e => e.kind === 'text').length >= 3")
    proxy.cut()
    tab.page.wait_for_function("() => window.seen.errors > 0")  # the EventSource saw the connection go
    proxy.restore()
    tab.page.wait_for_function("() => window.seen.done", timeout=30_000)
    seen = tab.page.evaluate("() => window.seen")
    kinds = [e["kind"] for e in seen["events"]]
    assert kinds.count("connected") == 2 and kinds.count("run_started") == 1 and kinds.count("done") == 1
    first, resumed = (e["frame"]["data"] for e in seen["events"] if e["kind"] == "connected")
    assert "recovered" not in first and resumed["recovered"] is True  # only a resume point (Last-Event-ID) says it
    live = [e for e in seen["events"] if e["kind"] != "connected"]
    seqs = [e["frame"]["seq"] for e in live]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every event once, in order
    text = "".join(e["frame"]["data"]["content"] for e in live if e["kind"] == "text")
    answer = [m for m in stored_messages(srv, session_id) if m["role"] == "assistant"][-1]
    assert answer["content"] == text and answer["status"] == "completed"
    assert tab.errors == [] and tab.guard.foreign == []
