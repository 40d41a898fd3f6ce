"""The client frames a socket acts on (PROTOCOL.md): chat, hitl_decision, cancel, ping, resume.

Every acting frame reads the session's owner now (SessionWatch), never from the handshake: a session may have
been deleted or expired, and its id taken by another principal (docs/SECURITY.md). The end user is the
handshake's (X-User-ID or `?user_id=`); a `chat` frame's `user_id` must name the same one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dataagent.adapters.http.websocket.frames import encode, error_frame, local_frame, parse_frame
from dataagent.application.streams import Subscription
from dataagent.application.watch import Ownership, require_owned
from dataagent.domain.errors import (
    DataAgentError,
    InterruptNotFoundError,
    InvalidInputError,
    NoActiveRunError,
    SessionNotFoundError,
)

if TYPE_CHECKING:  # within the adapter only: the connection calls `handle`, the handlers read the connection
    from dataagent.adapters.http.websocket.connection import Connection

Handler = Callable[["Connection", Subscription, dict[str, Any]], Awaitable[None]]


async def handle(conn: Connection, subscription: Subscription, raw: str) -> None:
    """Act on one client frame; a frame that fails is answered with an error frame to this socket alone."""
    try:
        kind, payload = parse_frame(raw)
    except InvalidInputError as exc:
        subscription.put_local(error_frame(conn.sid, exc.code, exc.message))
        return
    handler = HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is None or not isinstance(payload, dict):
        subscription.put_local(error_frame(
            conn.sid, "validation_error", f"unknown frame type {kind!r} or payload not an object"
        ))
        return
    try:
        await handler(conn, subscription, payload)
    except DataAgentError as exc:  # rate_limited says when to try again in its details, as REST's headers do
        details = None
        if exc.code == "rate_limited":
            details = exc.details
            conn.telemetry.rate_limited("ws")
        subscription.put_local(error_frame(conn.sid, exc.code, exc.message, details=details))


def _gone(subscription: Subscription) -> SessionNotFoundError:
    """The id is another principal's now: the socket closes 4404 (after what was queued) and the frame fails."""
    subscription.fail(SessionNotFoundError())
    return SessionNotFoundError()


async def _check_frame(conn: Connection, subscription: Subscription) -> bool:
    """True if the session is ours, False if nobody uses the id; another caller's fails socket and frame; one of
    the key's end users' (a socket of the key itself) fails the frame alone: forbidden."""
    ownership = await conn.watch.ownership(conn.principal, conn.sid)
    if ownership is Ownership.FOREIGN:
        raise _gone(subscription)
    if ownership is not Ownership.UNUSED:
        require_owned(ownership)
    return ownership is Ownership.OWNED


async def _require_session(conn: Connection, subscription: Subscription, missing: DataAgentError) -> None:
    """An id nobody uses yet has no run and no approval: say so rather than session_not_found."""
    if not await _check_frame(conn, subscription):
        raise missing


async def on_chat(conn: Connection, subscription: Subscription, payload: dict[str, Any]) -> None:
    key = payload.get("client_message_id")
    if key is not None and not isinstance(key, str):
        raise InvalidInputError("client_message_id must be a string")
    user_id = payload.get("user_id")
    if user_id is not None and user_id != conn.principal.end_user:
        raise InvalidInputError("user_id must name the end user of the handshake (X-User-ID or user_id)")
    message, metadata, strategy = payload.get("message"), payload.get("metadata"), payload.get("multitask_strategy")
    try:  # the service validates the message, the metadata and the strategy, and reads the owner
        if conn.requests is not None:
            run = await conn.requests.start(conn.principal, key, message, conn.sid, metadata, strategy,
                                            route="ws_chat")
        else:
            run = await conn.chat.start(conn.principal, message, conn.sid, metadata, strategy)  # type: ignore[arg-type]
    except SessionNotFoundError:
        _gone(subscription)
        return
    conn.asked_runs.add(run.run_id)  # its run_started needs no second owner read: the ask read it
    conn.owned = True


async def on_decision(conn: Connection, subscription: Subscription, payload: dict[str, Any]) -> None:
    await _require_session(conn, subscription, InterruptNotFoundError("No approval is pending in this session"))
    interrupt_id = payload.get("interrupt_id")
    if interrupt_id is not None and not isinstance(interrupt_id, str):
        raise InvalidInputError("interrupt_id must be a string")
    await conn.chat.decide(conn.principal, conn.sid, interrupt_id, payload.get("decisions"))


async def on_cancel(conn: Connection, subscription: Subscription, payload: dict[str, Any]) -> None:
    await _require_session(conn, subscription, NoActiveRunError())
    run_id = payload.get("run_id")
    await conn.chat.cancel(conn.principal, conn.sid, run_id if isinstance(run_id, str) else None, wait=False)


async def on_ping(conn: Connection, subscription: Subscription, payload: dict[str, Any]) -> None:
    subscription.put_local(local_frame(conn.sid, "pong", {}))


async def on_resume(conn: Connection, subscription: Subscription, payload: dict[str, Any]) -> None:
    """The held events after `after_seq` this socket has not had (those at or above its replay floor were sent,
    or are queued), then `resumed` with their count; `replay_unavailable` instead when some are not held."""
    after_seq = payload.get("after_seq")
    if not isinstance(after_seq, int) or isinstance(after_seq, bool):
        raise InvalidInputError("after_seq must be an integer")
    replay = await conn.watch.resume(conn.principal, conn.sid, after_seq)
    if replay.ownership is Ownership.FOREIGN:
        raise _gone(subscription)
    floor = conn.replay_floor if conn.replay_floor is not None else after_seq + 1
    missing = [e for e in replay.events if e.seq < floor]
    if missing:
        conn.replay_floor = missing[0].seq
    if not replay.complete:
        subscription.put_local(local_frame(conn.sid, "error", {
            "error_code": "replay_unavailable",
            "message": "Events after after_seq are no longer held; reload the history",
            "recoverable": True, "replayed": len(missing),
        }))
    for event in missing:
        subscription.put_local(encode(event))
    if replay.complete:
        subscription.put_local(local_frame(conn.sid, "resumed", {"after_seq": after_seq, "replayed": len(missing)}))


HANDLERS: dict[str, Handler] = {
    "chat": on_chat,
    "hitl_decision": on_decision,
    "cancel": on_cancel,
    "ping": on_ping,
    "resume": on_resume,
}
