"""The sessions routes: list, get, delete, and paged history."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, Query, Response

from dataagent.adapters.http.auth import require_principal
from dataagent.adapters.http.schemas import ErrorBody, MessageList, MessageOut, SessionInfo, SessionList
from dataagent.application.sessions import SessionService
from dataagent.domain.models import MessagePageQuery

router = APIRouter(tags=["sessions"], responses={
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody},
})


@router.get("/sessions", response_model=SessionList)
@inject
async def list_sessions(
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0),
    principal: str = Depends(require_principal),
    service: SessionService = Depends(Provide["session_service"]),  # noqa: B008
) -> SessionList:
    """The caller's sessions, most recently active first."""
    sessions, total = await service.list(principal, limit, offset)
    return SessionList(
        sessions=[SessionInfo.from_domain(s) for s in sessions], total=total, limit=limit, offset=offset
    )


@router.get("/sessions/{session_id}", response_model=SessionInfo)
@inject
async def get_session(
    session_id: str,
    principal: str = Depends(require_principal),
    service: SessionService = Depends(Provide["session_service"]),  # noqa: B008
) -> SessionInfo:
    return SessionInfo.from_domain(await service.get(principal, session_id))


@router.delete("/sessions/{session_id}", status_code=204, response_class=Response)
@inject
async def delete_session(
    session_id: str,
    principal: str = Depends(require_principal),
    service: SessionService = Depends(Provide["session_service"]),  # noqa: B008
) -> Response:
    """Delete the session and its messages, cancelling a running answer first."""
    await service.delete(principal, session_id)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/messages", response_model=MessageList)
@inject
async def list_messages(
    session_id: str,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    after: str | None = Query(None, description="message_id cursor: the messages after it"),
    before: str | None = Query(None, description="message_id cursor: the messages just before it"),
    principal: str = Depends(require_principal),
    service: SessionService = Depends(Provide["session_service"]),  # noqa: B008
) -> MessageList:
    """The session's history, oldest first, by offset or by cursor."""
    query = MessagePageQuery(limit=limit, offset=offset, after=after, before=before)
    page = await service.messages(principal, session_id, query)
    return MessageList(
        messages=[MessageOut.from_domain(m) for m in page.messages], total=page.total, limit=limit,
        offset=offset, has_more=page.has_more,
    )
