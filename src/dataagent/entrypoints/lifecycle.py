"""The one ordered start and stop of the services, for the server (app.py's lifespan) and the library.

store -> broker -> agent -> sockets -> runs -> recovery -> sweepers start in this order and stop in the
reverse one, each step bounded in time and logged. If a step cannot start, the steps started before it are
stopped (in reverse) and its error propagates; a step that fails or overruns its bound while stopping is
logged and the others still stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from dataagent.adapters.redis.client import close_client
from dataagent.application.audit import AuditService
from dataagent.application.failover import OrphanCloser
from dataagent.application.recovery import close_interrupted_runs
from dataagent.application.sessions import SessionService
from dataagent.application.tasks import stop_tasks
from dataagent.application.transport import FinalEvent
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.settings import Settings

log = logging.getLogger("dataagent")

STEP_TIMEOUT_S = 30.0
STORE_TIMEOUT_S = 300.0  # the store's start may run a migration's backfill (adapters/mysql/migrations.py)

Action = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    start: Action = _nothing
    stop: Action = _nothing
    timeout_s: float = STEP_TIMEOUT_S


class Lifecycle:
    """Starts its steps in order and stops those started in reverse, each at most once."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)
        self._started: list[Step] = []

    async def start(self) -> None:
        for step in self._steps:
            began = time.monotonic()
            try:
                await asyncio.wait_for(step.start(), step.timeout_s)
            except BaseException as exc:
                log.warning("start-up failed at %s (%s); stopping the %d steps started before it",
                            step.name, type(exc).__name__, len(self._started))
                await self.stop()
                raise
            self._started.append(step)
            log.debug("started %s in %.3f s", step.name, time.monotonic() - began)

    async def stop(self) -> None:
        while self._started:
            step = self._started.pop()
            began = time.monotonic()
            try:
                await asyncio.wait_for(step.stop(), step.timeout_s)
            except TimeoutError:
                log.error("stopping %s took over %.0f s; left behind", step.name, step.timeout_s)
            except Exception:
                log.exception("stopping %s failed", step.name)
            else:
                log.debug("stopped %s in %.3f s", step.name, time.monotonic() - began)

    async def __aenter__(self) -> Lifecycle:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def build_lifecycle(container: Container) -> Lifecycle:
    """The steps of the container's services, in their start order."""
    settings: Settings = container.settings()
    sweeper = Sweeper(container, settings)

    async def start_store() -> None:
        await container.repository().start()

    async def stop_store() -> None:
        await container.repository().close()
        if settings.session_store == "mysql":
            await container.mysql_engine().dispose()

    async def start_broker() -> None:
        broker = container.broker()
        # before its sweeper can find a dead owner's run; a freed session's queue goes on here
        broker.on_orphan(orphan_handler(container), then=container.run_queue().run_ended)
        await broker.start()

    async def stop_broker() -> None:
        await container.broker().close()
        if container.settings().broker == "redis":
            await close_client(container.redis_client())

    async def start_agent() -> None:
        container.engine()  # an engine that cannot be built fails here, before any run
        container.schema_catalog()

    async def stop_agent() -> None:
        await container.engine().close()
        await container.schema_catalog().close()

    async def stop_sockets() -> None:
        await container.socket_watchdog().close()

    async def start_runs() -> None:
        container.run_manager().attach()  # control for this process's runs
        container.status_service()  # uptime counts from here

    async def stop_runs() -> None:
        await container.run_manager().shutdown(reason="shutdown")

    async def recover() -> None:
        await recover_local_runs(container, settings)

    return Lifecycle([
        Step("store", start_store, stop_store, STORE_TIMEOUT_S),
        Step("broker", start_broker, stop_broker),
        Step("agent", start_agent, stop_agent),
        Step("sockets", stop=stop_sockets),
        Step("runs", start_runs, stop_runs),
        Step("recovery", recover),
        Step("sweepers", sweeper.start, sweeper.stop),
    ])


async def recover_local_runs(container: Container, settings: Settings) -> None:
    """With the local broker this process is the only one running answers, so run state left in the store by
    a previous process (which died with its runs) is cleared, and each answer it cut off is stored as failed
    (reason `interrupted`); shared brokers must not do that (their failover stores it as `worker_lost`)."""
    if settings.broker != "local":
        return
    repository = container.repository()
    interrupted = await close_interrupted_runs(repository, container.clock(), container.ids())
    if interrupted:
        log.warning("stored %d answers cut off by the end of a previous process as failed", interrupted)
    cleared = await repository.clear_run_states()
    if cleared:
        log.warning("cleared the active run of %d sessions left by a previous process", cleared)
    closed = await container.audit_service().close_open("interrupted")
    if closed:
        log.warning("marked %d audit records of statements cut off by a previous process as failed", closed)


def orphan_handler(container: Container) -> Callable[[str, str], Awaitable[FinalEvent | None]]:
    """The failover's closer of a dead owner's run, which also closes the run's open audit records."""
    closer: OrphanCloser = container.orphan_closer()
    audit: AuditService = container.audit_service()

    async def close(session_id: str, run_id: str) -> FinalEvent | None:
        final = await closer.close(session_id, run_id)
        try:
            await audit.close_open("worker_lost", session_id, run_id)
        except Exception:  # the run is closed; its audit records stay open, as the log says
            log.exception("the audit records of the lost run %s could not be closed", run_id)
        return final

    return close


class Sweeper:
    """Every `expiry_interval` seconds, in tasks of their own: expires idle sessions, and deletes audit records
    older than DATAAGENT_AUDIT_RETENTION days."""

    def __init__(self, container: Container, settings: Settings) -> None:
        self._container = container
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        service: SessionService = self._container.session_service()
        audit: AuditService = self._container.audit_service()
        self._tasks = [asyncio.create_task(self._expire_forever(service), name="session-expiry"),
                       asyncio.create_task(self._purge_audit_forever(audit), name="audit-retention")]

    async def stop(self) -> None:
        await stop_tasks(*self._tasks)
        self._tasks = []

    async def _purge_audit_forever(self, audit: AuditService) -> None:
        while True:
            await asyncio.sleep(self._settings.expiry_interval)  # first: a stop right after start cuts no query
            try:
                purged = await audit.purge()
                if purged:
                    log.info("deleted %d audit records older than %g days", purged, self._settings.audit_retention)
            except Exception:
                log.exception("the audit retention sweep failed")

    async def _expire_forever(self, service: SessionService) -> None:
        while True:
            await asyncio.sleep(self._settings.expiry_interval)
            try:
                expired = await service.expire_idle(self._settings.session_timeout)
                if expired:
                    log.info("expired %d idle sessions", len(expired))
            except Exception:
                log.exception("session expiry failed")
