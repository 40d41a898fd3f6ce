"""The dependency-injector container: the one place that knows every concrete class."""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dataagent.adapters.http.event_stream import StreamSettings
from dataagent.adapters.http.websocket import SendWatchdog, SocketSettings
from dataagent.adapters.memory.audit import InMemoryAuditLog
from dataagent.adapters.memory.feedback import InMemoryFeedbackStore, InMemoryVerifiedQueryStore
from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.slots import InMemoryRunSlots
from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.mysql.audit import MySqlAuditLog
from dataagent.adapters.mysql.engine import EngineOptions
from dataagent.adapters.mysql.engine import build_engine as build_sql_engine
from dataagent.adapters.mysql.feedback import MySqlFeedbackStore, MySqlVerifiedQueryStore
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.adapters.observability.timed import timed_broker, timed_store
from dataagent.adapters.ratelimit.window import MovingWindowRate, memory_storage, redis_storage
from dataagent.adapters.redis.client import close_client, make_client
from dataagent.adapters.redis.slots import RedisRunSlots
from dataagent.adapters.redis.transport import RedisTransport, redis_hub
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.audit import AuditService, AuditTrail
from dataagent.application.auth import ApiKeyAuthenticator
from dataagent.application.bounds import Bounds, SessionBounds
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService, ChatSettings
from dataagent.application.failover import OrphanCloser
from dataagent.application.feedback import FeedbackService
from dataagent.application.idempotency import IdempotentChat
from dataagent.application.limits import Limits, RunSlots
from dataagent.application.ports import AgentEngine
from dataagent.application.queue import RunQueue
from dataagent.application.runs import RunManager, RunSettings
from dataagent.application.sessions import SessionService
from dataagent.application.status import StatusService
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.application.verified import VerifiedQueryService
from dataagent.application.watch import SessionWatch
from dataagent.domain.inputs import JsonLimits
from dataagent.entrypoints.engines import build_catalog, build_data_context, build_engine, build_example_finder
from dataagent.entrypoints.settings import Settings

__all__ = ["Container", "build_engine", "build_mysql_engine", "check_broker", "check_store", "component_names"]


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


def build_mysql_engine(settings: Settings) -> AsyncEngine:
    """The store's engine (it connects lazily), with the pool and timeouts of the MYSQL_* settings."""
    return build_sql_engine(mysql_url(settings), EngineOptions(
        pool_size=settings.mysql_pool_size, max_overflow=settings.mysql_max_overflow,
        pool_timeout_s=settings.mysql_pool_timeout, pool_recycle_s=settings.mysql_pool_recycle,
        connect_timeout_s=settings.mysql_connect_timeout, read_timeout_s=settings.mysql_read_timeout,
    ))


def mysql_where(settings: Settings) -> str:
    """host:port/database, as errors name the store (never the password)."""
    url = mysql_url(settings)
    return f"{url.host or 'localhost'}:{url.port or 3306}/{url.database}"


async def check_store(settings: Settings) -> None:
    """Connect to the configured store and create its schema once; StoreUnavailableError if it cannot."""
    if settings.session_store != "mysql":
        return
    engine = build_mysql_engine(settings)
    repository = MySqlSessionRepository(engine, where=mysql_where(settings))
    try:
        await repository.start()
    finally:
        await repository.close()
        await engine.dispose()


async def check_broker(settings: Settings) -> None:
    """Reach the configured shared broker once; BrokerUnavailableError if it cannot."""
    if settings.broker != "redis":
        return
    client = make_client(settings.redis_url, max_connections=1)
    try:
        await RedisTransport(client, prefix=settings.redis_prefix).ping()
    finally:
        await close_client(client)


def build_limits(settings: Settings, redis_client: Any) -> Limits:
    """DATAAGENT_RATE_LIMIT and DATAAGENT_MAX_RUNS_PER_KEY, counted in Redis with the Redis broker (every worker and
    host), in this process otherwise; an unset limit is not counted at all."""
    shared = settings.broker == "redis"
    rate = None
    if settings.rate_limit is not None:
        storage = redis_storage(redis_client(), settings.redis_prefix) if shared else memory_storage()
        rate = MovingWindowRate(storage, settings.rate_limit)
    slots: RunSlots | None = None
    if settings.max_runs_per_key is not None:
        slots = (RedisRunSlots(redis_client(), settings.max_runs_per_key, settings.run_lease, settings.redis_prefix)
                 if shared else InMemoryRunSlots(settings.max_runs_per_key))
    return Limits(rate, slots)
def build_telemetry(settings: Settings) -> Telemetry:
    """Prometheus metrics (DATAAGENT_METRICS), else nothing is counted; prometheus-client is imported only then."""
    if not settings.metrics:
        return NO_TELEMETRY
    from dataagent.adapters.observability.prometheus import PrometheusTelemetry

    return PrometheusTelemetry()


def build_tracing() -> Tracing:
    """OpenTelemetry spans as the OTEL_* variables say, with the `otel` extra installed; else none (and the code
    that would open them runs as if tracing did not exist)."""
    try:
        from dataagent.adapters.observability.tracing import tracing_from_environment
    except ImportError:
        return NO_TRACING
    return tracing_from_environment()


def component_names(settings: Settings, engine: AgentEngine) -> dict[str, str]:
    return {"store": settings.session_store, "broker": settings.broker, "agent": engine.name}


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIdGenerator)
    telemetry = providers.Singleton(build_telemetry, settings)
    tracing = providers.Singleton(build_tracing)

    mysql_engine = providers.Singleton(build_mysql_engine, settings)  # disposed by entrypoints/lifecycle.py

    store = providers.Selector(
        settings.provided.session_store,
        memory=providers.Singleton(InMemorySessionRepository),
        mysql=providers.Singleton(
            MySqlSessionRepository, mysql_engine, where=providers.Callable(mysql_where, settings),
            telemetry=telemetry,
        ),
    )
    repository = providers.Singleton(timed_store, store, telemetry, tracing)  # its calls timed when metrics are on
    feedback_store = providers.Selector(
        settings.provided.session_store,
        memory=providers.Singleton(InMemoryFeedbackStore, store),
        mysql=providers.Singleton(MySqlFeedbackStore, mysql_engine),
    )
    verified_store = providers.Selector(
        settings.provided.session_store,
        memory=providers.Singleton(InMemoryVerifiedQueryStore),
        mysql=providers.Singleton(MySqlVerifiedQueryStore, mysql_engine),
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
        redis=providers.Singleton(redis_hub, providers.Singleton(timed_broker, providers.Singleton(
            RedisTransport,
            client=redis_client,
            replay_events=settings.provided.replay_events,
            replay_ttl_s=settings.provided.replay_ttl,
            lease_s=settings.provided.run_lease,
            prefix=settings.provided.redis_prefix,
        ), telemetry)),
    )
    limits = providers.Singleton(build_limits, settings, redis_client.provider)  # the client only if it counts
    # the SQL audit trail, in the session store (the MySQL table is created with the others)
    audit_log = providers.Selector(
        settings.provided.session_store,
        memory=providers.Singleton(InMemoryAuditLog, settings.provided.audit_max_memory_records),
        mysql=providers.Singleton(MySqlAuditLog, mysql_engine),
    )
    audit_trail = providers.Singleton(AuditTrail, audit_log, clock, ids)
    audit_service = providers.Singleton(AuditService, audit_log, clock, settings.provided.audit_retention)

    data_context = providers.Singleton(build_data_context, settings)  # one data source for the engine and catalog
    engine = providers.Singleton(build_engine, settings, data_context, audit_trail, telemetry, tracing)
    schema_catalog = providers.Singleton(build_catalog, data_context)
    example_finder = providers.Singleton(build_example_finder, settings, verified_store, data_context.provider)

    run_manager = providers.Singleton(
        RunManager,
        repository=repository,
        broker=broker,
        engine=engine,
        clock=clock,
        ids=ids,
        settings=providers.Factory(RunSettings, hitl_timeout_s=settings.provided.hitl_timeout),
        limits=limits,
        examples=example_finder,
        telemetry=telemetry,
        tracing=tracing,
    )
    run_queue = providers.Singleton(
        RunQueue, repository=repository, broker=broker, runs=run_manager, clock=clock, ids=ids,
        max_queued=settings.provided.max_queued_per_session, telemetry=telemetry,
    )
    orphan_closer = providers.Singleton(OrphanCloser, repository=repository, broker=broker, clock=clock, ids=ids)
    capacity = providers.Singleton(Capacity, settings.provided.max_connections)
    authenticator = providers.Singleton(
        ApiKeyAuthenticator, settings.provided.api_keys, settings.provided.auth_disabled,
        settings.provided.scopes_by_principal,
    )

    # What routes are given (Provide[...]) is built once: a Factory rebuilt a service's whole graph on every
    # request (some thirty provider calls per WebSocket connection); the services keep no per-request state.
    socket_settings = providers.Singleton(
        SocketSettings,
        send_buffer=settings.provided.ws_send_buffer,
        max_frame_bytes=settings.provided.max_frame_bytes,
        send_timeout_s=settings.provided.ws_send_timeout,
    )
    socket_watchdog = providers.Singleton(SendWatchdog)
    stream_settings = providers.Singleton(
        StreamSettings, keepalive_s=settings.provided.sse_keepalive, send_buffer=settings.provided.ws_send_buffer,
        send_timeout_s=settings.provided.ws_send_timeout,
    )

    session_watch = providers.Singleton(SessionWatch, repository=repository, broker=broker)
    chat_service = providers.Singleton(
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
        watch=session_watch,
        queue=run_queue,
        limits=limits,
    )
    idempotent_chat = providers.Singleton(
        IdempotentChat, chat=chat_service, repository=repository, broker=broker, clock=clock
    )
    session_service = providers.Singleton(
        SessionService, repository=repository, runs=run_manager, clock=clock, broker=broker, watch=session_watch
    )
    feedback_service = providers.Singleton(
        FeedbackService, repository=repository, store=feedback_store, watch=session_watch, clock=clock
    )
    verified_service = providers.Singleton(
        VerifiedQueryService, repository=repository, store=verified_store, clock=clock, ids=ids
    )
    status_service = providers.Singleton(
        StatusService,
        repository=repository,
        broker=broker,
        runs=run_manager,
        capacity=capacity,
        names=providers.Callable(component_names, settings, engine),
    )
