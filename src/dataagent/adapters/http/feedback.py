"""Feedback on an answer: POST and GET /sessions/{session_id}/messages/{message_id}/feedback."""


from datetime import datetime
from typing import Annotated, Literal

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from dataagent.adapters.http.deps import Admin, OwnedSessionId, Principal
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody
from dataagent.application.feedback import FeedbackService
from dataagent.domain.feedback import MAX_COMMENT_CHARS, Feedback

Service = Annotated[FeedbackService, Depends(Provide["feedback_service"])]
router = APIRouter(tags=["feedback"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 503)  # 403: X-User-ID without the scope
})
MAX_OFFSET = 2**31 - 1
PATH = "/sessions/{session_id}/messages/{message_id}/feedback"


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS,
                                description=f"at most {MAX_COMMENT_CHARS} characters")


class FeedbackOut(BaseModel):
    session_id: str
    message_id: str
    rating: Literal["up", "down"]
    comment: str
    created_at: datetime = Field(description="when the caller first rated the message")
    updated_at: datetime = Field(description="when it last changed its rating or comment")

    @classmethod
    def from_domain(cls, f: Feedback) -> "FeedbackOut":
        return cls(session_id=f.session_id, message_id=f.message_id, rating=f.rating.value, comment=f.comment,
                   created_at=f.created_at, updated_at=f.updated_at)


@router.post(PATH)
@inject
async def give_feedback(
    session_id: OwnedSessionId, message_id: str, body: FeedbackIn, principal: Principal, service: Service
) -> FeedbackOut:
    """Rate an answer (an assistant message) of the caller's session; rating it again replaces the rating and
    the comment."""
    return FeedbackOut.from_domain(await service.give(principal, session_id, message_id, body.rating, body.comment))


@router.get(PATH)
@inject
async def read_feedback(session_id: str, message_id: str, principal: Principal, service: Service) -> FeedbackOut:
    """The caller's feedback on the answer; 404 feedback_not_found if it gave none."""
    return FeedbackOut.from_domain(await service.read(principal, session_id, message_id))


class GivenFeedback(FeedbackOut):
    principal: str = Field(description="who gave it")


class FeedbackList(BaseModel):
    feedback: list[GivenFeedback]
    total: int
    limit: int
    offset: int


@router.get("/feedback")
@inject
async def list_feedback(
    principal: Admin, service: Service, rating: Literal["up", "down"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> FeedbackList:
    """Every principal's feedback, most recently changed first (`admin` scope): the answers to promote to
    verified queries (POST /verified-queries with their session_id and message_id)."""
    found, total = await service.list_all(rating, limit, offset)
    return FeedbackList(feedback=[
        GivenFeedback(**FeedbackOut.from_domain(f).model_dump(), principal=f.principal) for f in found
    ], total=total, limit=limit, offset=offset)
