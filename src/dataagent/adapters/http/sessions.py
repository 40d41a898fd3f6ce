"""The sessions routes: list, get, delete, and paged history."""


from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Query, Response

from dataagent.adapters.http.deps import Principal, Sessions, UserQueryPrincipal
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody, MessageList, MessageOut, SessionInfo, SessionList
from dataagent.domain.models import MessagePageQuery

router = APIRouter(tags=["sessions"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503)
})
MAX_OFFSET = 2**31 - 1  # both stores take it; beyond, MySQL's LIMIT overflows


@router.get("/sessions")
@inject
async def list_sessions(
    principal: UserQueryPrincipal,
    service: Sessions,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SessionList:
    """The caller's sessions, most recently active first: an end user's own (X-User-ID or `?user_id=`), or for
    the key itself all of them, its end users' too."""
    sessions, total = await service.list_sessions(principal, limit, offset)
    return SessionList(
        sessions=[SessionInfo.from_domain(s) for s in sessions], total=total, limit=limit, offset=offset
    )


@router.get("/sessions/{session_id}")
@inject
async def get_session(
    session_id: str,
    principal: Principal,
    service: Sessions,
) -> SessionInfo:
    return SessionInfo.from_domain(await service.get(principal, session_id))


@router.delete("/sessions/{session_id}", status_code=204, response_class=Response)
@inject
async def delete_session(
    session_id: str,
    principal: Principal,
    service: Sessions,
) -> Response:
    """Delete the session and its messages, cancelling a running answer first."""
    await service.delete(principal, session_id)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/messages")
@inject
async def list_messages(
    session_id: str,
    principal: Principal,
    service: Sessions,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    after: Annotated[str | None, Query(min_length=1, description="message_id cursor: the messages after it")] = None,
    before: Annotated[
        str | None, Query(min_length=1, description="message_id cursor: the messages just before it")
    ] = None,
) -> MessageList:
    """The session's history, oldest first, by offset or by cursor."""
    query = MessagePageQuery(limit=limit, offset=offset, after=after, before=before)
    page = await service.messages(principal, session_id, query)
    return MessageList(
        messages=[MessageOut.from_domain(m) for m in page.messages], total=page.total, limit=limit,
        offset=offset, has_more=page.has_more,
    )
