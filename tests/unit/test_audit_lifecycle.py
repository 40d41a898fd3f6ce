"""The lifecycle's audit duties: a dead owner's run closes its open audit records with the run."""

from __future__ import annotations

from datetime import UTC, datetime

from dependency_injector import providers

from dataagent.domain.audit import AuditOutcome, AuditRecord
from dataagent.domain.errors import StoreUnavailableError
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.lifecycle import orphan_handler
from tests.support.servers import make_settings


class RecordingCloser:
    def __init__(self) -> None:
        self.closed: list[tuple[str, str]] = []

    async def close(self, session_id: str, run_id: str) -> None:
        self.closed.append((session_id, run_id))


def open_record(audit_id: str, run_id: str) -> AuditRecord:
    return AuditRecord(audit_id, datetime.now(UTC), "s1", run_id, "alice", "SELECT 1", "SELECT", True,
                       outcome=AuditOutcome.RUNNING)


async def test_the_orphan_handler_closes_the_run_and_then_its_open_audit_records() -> None:
    container = Container(settings=make_settings())
    closer = RecordingCloser()
    container.orphan_closer.override(providers.Object(closer))
    log = container.audit_log()
    await log.save(open_record("aud_1", "run_lost"))
    await log.save(open_record("aud_2", "run_alive"))

    await orphan_handler(container)("s1", "run_lost")

    assert closer.closed == [("s1", "run_lost")]
    lost, alive = await log.get("aud_1"), await log.get("aud_2")
    assert lost is not None and lost.outcome == "failed" and (lost.error or "").startswith("worker_lost")
    assert alive is not None and alive.outcome == "running"


async def test_an_audit_store_failure_does_not_fail_the_runs_closing() -> None:
    container = Container(settings=make_settings())
    closer = RecordingCloser()
    container.orphan_closer.override(providers.Object(closer))

    class DownLog:
        async def find(self, query: object) -> object:
            raise StoreUnavailableError()

    container.audit_log.override(providers.Object(DownLog()))
    assert await orphan_handler(container)("s1", "run_lost") is None
    assert closer.closed == [("s1", "run_lost")]
