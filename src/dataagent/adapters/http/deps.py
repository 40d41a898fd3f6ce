"""Annotated dependencies of the routes: the caller's principal and the services, by container name."""

from __future__ import annotations

from typing import Annotated

from dependency_injector.wiring import Provide
from fastapi import Depends

from dataagent.adapters.http.auth import require_principal
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService
from dataagent.application.sessions import SessionService
from dataagent.application.status import StatusService

Principal = Annotated[str, Depends(require_principal)]
Chat = Annotated[ChatService, Depends(Provide["chat_service"])]
Sessions = Annotated[SessionService, Depends(Provide["session_service"])]
Status = Annotated[StatusService, Depends(Provide["status_service"])]
Slots = Annotated[Capacity, Depends(Provide["capacity"])]
