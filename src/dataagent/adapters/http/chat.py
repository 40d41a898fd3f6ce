"""POST /chat, /chat/{session_id}/cancel and /chat/{session_id}/hitl."""


from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Body

from dataagent.adapters.http.deps import IdempotencyKey, OwnedSessionId, Principal, Requests, Slots
from dataagent.adapters.http.inputs import EdgeRoute, SafeJSONResponse
from dataagent.adapters.http.schemas import (
    CancelRequest,
    CancelResponse,
    ChatRequest,
    ChatResponse,
    ErrorBody,
    HitlRequest,
    RunAccepted,
    event_dict,
)
from dataagent.application.chat import RunOutcome

router = APIRouter(tags=["chat"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 503)
})


def _response(outcome: RunOutcome) -> ChatResponse:
    return ChatResponse(
        session_id=outcome.session_id, run_id=outcome.run_id, status=outcome.status,  # type: ignore[arg-type]
        content=outcome.content, message_id=outcome.message_id,
        events=[event_dict(e) for e in outcome.events],
    )


@router.post("/chat", response_model=ChatResponse, responses={
    202: {"model": RunAccepted, "description": "`wait: false`: the run started and goes on in the background"},
})
@inject
async def chat(
    body: ChatRequest,
    principal: Principal,
    service: Requests,
    capacity: Slots,
    key: IdempotencyKey = None,
) -> ChatResponse | SafeJSONResponse:
    """Ask a question and wait for the answer (or for the approval it needs); `wait: false` returns at once."""
    if not body.wait:
        run = await service.start(principal, key, body.message, body.session_id, body.metadata,
                                  body.multitask_strategy)
        return SafeJSONResponse(RunAccepted(session_id=run.session_id, run_id=run.run_id).model_dump(), 202)
    with capacity.slot():
        return _response(await service.chat(principal, key, body.message, body.session_id, body.metadata,
                                            body.multitask_strategy))


@router.post("/chat/{session_id}/cancel")
@inject
async def cancel(
    session_id: str,
    principal: Principal,
    service: Requests,
    body: Annotated[CancelRequest | None, Body()] = None,
    key: IdempotencyKey = None,
) -> CancelResponse:
    """Cancel the session's running answer; its partial text is kept."""
    run_id = await service.cancel(principal, key, session_id, body.run_id if body else None)
    return CancelResponse(session_id=session_id, run_id=run_id)


@router.post("/chat/{session_id}/hitl")
@inject
async def decide(
    session_id: OwnedSessionId,
    body: HitlRequest,
    principal: Principal,
    service: Requests,
    capacity: Slots,
    key: IdempotencyKey = None,
) -> ChatResponse:
    """Approve, edit or reject a pending action, then wait like POST /chat for the continued run."""
    decisions = [d.model_dump(exclude_none=True) for d in body.decisions]
    with capacity.slot():
        return _response(await service.decide_and_wait(principal, key, session_id, body.interrupt_id, decisions))
