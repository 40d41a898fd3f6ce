"""The dependency-injector container: the one place that knows every concrete class."""

from __future__ import annotations

import logging

from dependency_injector import containers, providers
from sqlalchemy import URL, make_url

from dataagent.adapters.http.watchdog import SendWatchdog
from dataagent.adapters.http.websocket import SocketSettings
from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.mysql.engine import EngineOptions
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.adapters.redis.client import close_client, make_client
from dataagent.adapters.redis.transport import RedisTransport, redis_hub
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.auth import ApiKeyAuthenticator
from dataagent.application.bounds import Bounds, SessionBounds
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService, ChatSettings
from dataagent.application.ports import AgentEngine
from dataagent.application.recovery import close_interrupted_runs
from dataagent.application.runs import RunManager, RunSettings
from dataagent.application.sessions import SessionService
from dataagent.application.status import StatusService
from dataagent.domain.inputs import JsonLimits
from dataagent.entrypoints.engines import build_engine
from dataagent.entrypoints.settings import Settings

log = logging.getLogger("dataagent")

__all__ = ["Container", "build_engine", "component_names", "start_services", "stop_services"]


def mysql_url(settings: Settings) -> URL:
    """DATAAGENT_MYSQL_URL if set, else a URL from the MYSQL_* settings (any password character works)."""
    if settings.mysql_url is not None:
        url = make_url(settings.mysql_url.get_secret_value())
    else:
        url = URL.create(
            "mysql", username=settings.mysql_user, password=settings.mysql_password.get_secret_value() or None,
            host=settings.mysql_host, port=settings.mysql_port, database=settings.mysql_database,
        )
    return url.set(drivername=f"{url.get_backend_name()}+asyncmy")


def build_mysql_repository(settings: Settings) -> MySqlSessionRepository:
    url = mysql_url(settings)
    options = EngineOptions(
        pool_size=settings.mysql_pool_size, max_overflow=settings.mysql_max_overflow,
        pool_timeout_s=settings.mysql_pool_timeout, pool_recycle_s=settings.mysql_pool_recycle,
        connect_timeout_s=settings.mysql_connect_timeout, read_timeout_s=settings.mysql_read_timeout,
    )
    return MySqlSessionRepository(url, options, where=f"{url.host or 'localhost'}:{url.port or 3306}/{url.database}")


async def check_store(settings: Settings) -> None:
    """Connect to the configured store and create its schema once; StoreUnavailableError if it cannot."""
    if settings.session_store != "mysql":
        return
    repository = build_mysql_repository(settings)
    try:
        await repository.start()
    finally:
        await repository.close()


async def check_broker(settings: Settings) -> None:
    """Reach the configured shared broker once; BrokerUnavailableError if it cannot."""
    if settings.broker != "redis":
        return
    client = make_client(settings.redis_url, max_connections=1)
    try:
        await RedisTransport(client, prefix=settings.redis_prefix).ping()
    finally:
        await close_client(client)


def component_names(settings: Settings, engine: AgentEngine) -> dict[str, str]:
    return {"store": settings.session_store, "broker": settings.broker, "agent": engine.name}


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIdGenerator)

    repository = providers.Selector(
        settings.provided.session_store,
        memory=providers.Singleton(InMemorySessionRepository),
        mysql=providers.Singleton(build_mysql_repository, settings),
    )
    redis_client = providers.Singleton(
        make_client, settings.provided.redis_url, settings.provided.redis_max_connections)
    broker = providers.Selector(
        settings.provided.broker,
        local=providers.Singleton(
            in_memory_hub,
            replay_events=settings.provided.replay_events,
            replay_ttl_s=settings.provided.replay_ttl,
        ),
        redis=providers.Singleton(redis_hub, providers.Singleton(
            RedisTransport,
            client=redis_client,
            replay_events=settings.provided.replay_events,
            replay_ttl_s=settings.provided.replay_ttl,
            lease_s=settings.provided.run_lease,
            prefix=settings.provided.redis_prefix,
        )),
    )
    engine = providers.Singleton(build_engine, settings)

    run_manager = providers.Singleton(
        RunManager,
        repository=repository,
        broker=broker,
        engine=engine,
        clock=clock,
        ids=ids,
        settings=providers.Factory(RunSettings, hitl_timeout_s=settings.provided.hitl_timeout),
    )
    capacity = providers.Singleton(Capacity, settings.provided.max_connections)
    authenticator = providers.Singleton(
        ApiKeyAuthenticator, settings.provided.api_keys, settings.provided.auth_disabled
    )

    socket_settings = providers.Factory(
        SocketSettings,
        send_buffer=settings.provided.ws_send_buffer,
        max_frame_bytes=settings.provided.max_frame_bytes,
        send_timeout_s=settings.provided.ws_send_timeout,
    )
    socket_watchdog = providers.Singleton(SendWatchdog)

    chat_service = providers.Factory(
        ChatService,
        repository=repository,
        broker=broker,
        runs=run_manager,
        clock=clock,
        ids=ids,
        settings=providers.Factory(
            ChatSettings, max_message_chars=settings.provided.max_message_chars,
            json_limits=providers.Factory(JsonLimits, max_depth=settings.provided.max_json_depth,
                                          max_bytes=settings.provided.max_json_bytes),
        ),
        bounds=providers.Factory(
            Bounds, repository,
            providers.Factory(SessionBounds,
                              max_sessions_per_principal=settings.provided.max_sessions_per_principal,
                              max_session_bytes=settings.provided.max_session_bytes),
        ),
    )
    session_service = providers.Factory(
        SessionService, repository=repository, runs=run_manager, clock=clock, broker=broker
    )
    status_service = providers.Singleton(
        StatusService,
        repository=repository,
        broker=broker,
        runs=run_manager,
        capacity=capacity,
        names=providers.Callable(component_names, settings, engine),
    )


async def start_services(container: Container) -> None:
    """Connect what needs connecting before the first request (store schema, broker).

    With the local broker this process is the only one running answers, so run state left in the store by
    a previous process (which died with its runs) is cleared, and each answer it cut off is stored as failed
    (reason `interrupted`); shared brokers must not do that (their failover stores it as `worker_lost`).
    """
    settings: Settings = container.settings()
    repository = container.repository()
    await repository.start()
    if settings.broker == "local":
        interrupted = await close_interrupted_runs(repository, container.clock(), container.ids())
        if interrupted:
            log.warning("stored %d answers cut off by the end of a previous process as failed", interrupted)
        cleared = await repository.clear_run_states()
        if cleared:
            log.warning("cleared the active run of %d sessions left by a previous process", cleared)
    await container.broker().start()
    container.run_manager()
    container.status_service()  # uptime counts from start-up


async def stop_services(container: Container) -> None:
    """Cancel and persist running answers, then release the broker, engine and store."""
    await container.run_manager().shutdown(reason="shutdown")
    await container.socket_watchdog().close()
    await container.broker().close()
    if container.settings().broker == "redis":
        await close_client(container.redis_client())
    await container.engine().close()
    await container.repository().close()
