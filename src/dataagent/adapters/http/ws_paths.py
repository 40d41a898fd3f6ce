"""WebSocket paths under /ws/chat/ that hold no session id (`a%2Fb`, `a/b`): accepted, then closed 4401 or 4400.

Without this route Starlette refuses them with an HTTP 403 before the handshake, and a browser cannot see why.
Include it after the chat socket's router, so that it only sees what that route did not match.
"""

from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, WebSocket

from dataagent.adapters.http.auth import presented_key
from dataagent.adapters.http.codes import CLOSE_BAD_SESSION, CLOSE_UNAUTHORIZED
from dataagent.adapters.http.injection import Provide
from dataagent.application.auth import ApiKeyAuthenticator

router = APIRouter()


@router.websocket("/ws/chat/{rest:path}")
@inject
async def bad_session_path(
    websocket: WebSocket,
    rest: str,
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
) -> None:
    await websocket.accept()
    if authenticator.authenticate(presented_key(websocket.headers, websocket.query_params)) is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized: a valid API key is required")
        return
    await websocket.close(CLOSE_BAD_SESSION, "session_id must be 1..64 characters of [A-Za-z0-9_-]")
