"""WebSocket /ws/chat/{session_id}: the route; accepts, authenticates, checks the ids (session, end user), takes a
capacity slot.

A run belongs to the run manager, not to the socket (see connection.py for the socket itself).
"""

from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, WebSocket

from dataagent.adapters.http.auth import caller_for, named_end_user, presented_key
from dataagent.adapters.http.codes import CLOSE_BAD_SESSION, CLOSE_FORBIDDEN, CLOSE_TRY_AGAIN, CLOSE_UNAUTHORIZED
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.websocket.connection import Connection, SocketSettings
from dataagent.adapters.http.websocket.watchdog import SendWatchdog
from dataagent.application import logcontext
from dataagent.application.auth import ApiKeyAuthenticator
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService
from dataagent.application.idempotency import IdempotentChat
from dataagent.application.telemetry import Telemetry, Tracing
from dataagent.application.watch import SessionWatch
from dataagent.domain.errors import ForbiddenError, InvalidInputError
from dataagent.domain.models import SESSION_ID_PATTERN

router = APIRouter()


@router.websocket("/ws/chat/{session_id}")
@inject
async def chat_socket(
    websocket: WebSocket,
    session_id: str,
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    capacity: Annotated[Capacity, Depends(Provide["capacity"])],
    chat: Annotated[ChatService, Depends(Provide["chat_service"])],
    watch: Annotated[SessionWatch, Depends(Provide["session_watch"])],
    requests: Annotated[IdempotentChat, Depends(Provide["idempotent_chat"])],
    settings: Annotated[SocketSettings, Depends(Provide["socket_settings"])],
    watchdog: Annotated[SendWatchdog, Depends(Provide["socket_watchdog"])],
    telemetry: Annotated[Telemetry, Depends(Provide["telemetry"])],
    tracing: Annotated[Tracing, Depends(Provide["tracing"])],
) -> None:
    await websocket.accept()
    principal = authenticator.authenticate(presented_key(websocket.headers, websocket.query_params))
    if principal is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized: a valid API key is required")
        return
    logcontext.bind(principal=principal, session_id=session_id)
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        await websocket.close(CLOSE_BAD_SESSION, "session_id must be 1..64 characters of [A-Za-z0-9_-]")
        return
    try:
        caller = caller_for(authenticator, principal, named_end_user(
            websocket.headers.get("x-user-id"), websocket.query_params.get("user_id")))
    except InvalidInputError as exc:
        await websocket.close(CLOSE_BAD_SESSION, f"validation_error: {exc.message}")
        return
    except ForbiddenError:
        await websocket.close(CLOSE_FORBIDDEN, "forbidden: this API key may not act for an end user")
        return
    if not capacity.try_acquire():
        await websocket.close(CLOSE_TRY_AGAIN, "server at capacity, try again later")
        return
    connection = Connection(websocket, caller, session_id, chat, watch, capacity, settings, watchdog)
    connection.requests, connection.telemetry, connection.tracing = requests, telemetry, tracing
    try:
        await connection.serve()
    finally:
        connection.release_slot()
        if connection.subscription is not None:
            connection.subscription.close()
