"""POST /chat, /chat/{session_id}/cancel and /chat/{session_id}/hitl."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Body, Depends

from dataagent.adapters.http.auth import require_principal
from dataagent.adapters.http.schemas import (
    CancelRequest,
    CancelResponse,
    ChatRequest,
    ChatResponse,
    ErrorBody,
    HitlRequest,
    event_dict,
)
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService, RunOutcome
from dataagent.domain.errors import CapacityExceededError

router = APIRouter(tags=["chat"], responses={
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody},
    422: {"model": ErrorBody}, 503: {"model": ErrorBody},
})


def _response(outcome: RunOutcome) -> ChatResponse:
    return ChatResponse(
        session_id=outcome.session_id, run_id=outcome.run_id, status=outcome.status,  # type: ignore[arg-type]
        content=outcome.content, message_id=outcome.message_id,
        events=[event_dict(e) for e in outcome.events],
    )


@router.post("/chat", response_model=ChatResponse)
@inject
async def chat(
    body: ChatRequest,
    principal: str = Depends(require_principal),
    service: ChatService = Depends(Provide["chat_service"]),  # noqa: B008
    capacity: Capacity = Depends(Provide["capacity"]),  # noqa: B008
) -> ChatResponse:
    """Ask a question and wait for the answer (or for the approval it needs)."""
    if not capacity.try_acquire():
        raise CapacityExceededError()
    try:
        return _response(await service.chat(principal, body.message, body.session_id, body.metadata))
    finally:
        capacity.release()


@router.post("/chat/{session_id}/cancel", response_model=CancelResponse)
@inject
async def cancel(
    session_id: str,
    body: CancelRequest | None = Body(default=None),  # noqa: B008
    principal: str = Depends(require_principal),
    service: ChatService = Depends(Provide["chat_service"]),  # noqa: B008
) -> CancelResponse:
    """Cancel the session's running answer; its partial text is kept."""
    run_id = await service.cancel(principal, session_id, body.run_id if body else None)
    return CancelResponse(session_id=session_id, run_id=run_id)


@router.post("/chat/{session_id}/hitl", response_model=ChatResponse)
@inject
async def decide(
    session_id: str,
    body: HitlRequest,
    principal: str = Depends(require_principal),
    service: ChatService = Depends(Provide["chat_service"]),  # noqa: B008
    capacity: Capacity = Depends(Provide["capacity"]),  # noqa: B008
) -> ChatResponse:
    """Approve, edit or reject a pending action, then wait like POST /chat for the continued run."""
    if not capacity.try_acquire():
        raise CapacityExceededError()
    try:
        decisions = [d.model_dump(exclude_none=True) for d in body.decisions]
        return _response(await service.decide_and_wait(principal, session_id, body.interrupt_id, decisions))
    finally:
        capacity.release()
