"""Annotated dependencies of the routes: the caller (principal and end user) and the services, by container
name."""

from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import Depends, Header

from dataagent.adapters.http.auth import (
    require_caller,
    require_caller_naming_user_in_query,
    require_caller_or_query,
    require_scope,
)
from dataagent.adapters.http.injection import Provide
from dataagent.application.auth import ADMIN
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService
from dataagent.application.idempotency import IdempotentChat
from dataagent.application.sessions import SessionService
from dataagent.application.status import StatusService
from dataagent.application.watch import SessionWatch
from dataagent.domain.callers import Caller

Principal = Annotated[Caller, Depends(require_caller)]  # the key's principal, and the end user it names
QueryPrincipal = Annotated[Caller, Depends(require_caller_or_query)]  # also `?api_key=` and `?user_id=`
UserQueryPrincipal = Annotated[Caller, Depends(require_caller_naming_user_in_query)]  # also `?user_id=`
Admin = Annotated[str, Depends(require_scope(ADMIN))]  # a principal whose key holds `admin`; else 403 forbidden
Chat = Annotated[ChatService, Depends(Provide["chat_service"])]
Requests = Annotated[IdempotentChat, Depends(Provide["idempotent_chat"])]  # ChatService with Idempotency-Key
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", description="a retry with the same key gets the first request's outcome (24 h)")]
Sessions = Annotated[SessionService, Depends(Provide["session_service"])]
Status = Annotated[StatusService, Depends(Provide["status_service"])]
Slots = Annotated[Capacity, Depends(Provide["capacity"])]
Watch = Annotated[SessionWatch, Depends(Provide["session_watch"])]


@inject
async def owned_session_id(
    session_id: str,
    principal: Principal,
    watch: Watch,
) -> str:
    """The path's session id, once it is known to be the caller's (404 before any body is validated)."""
    await watch.owned(principal, session_id)
    return session_id


OwnedSessionId = Annotated[str, Depends(owned_session_id)]
