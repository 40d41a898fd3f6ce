"""/verified-queries: questions with the SQL that answers them, managed by keys with the `admin` scope."""


from datetime import datetime
from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataagent.adapters.http.deps import Admin
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody
from dataagent.application.verified import VerifiedQueryService
from dataagent.domain.feedback import MAX_QUESTION_CHARS, MAX_SQL_CHARS, VerifiedQuery

Service = Annotated[VerifiedQueryService, Depends(Provide["verified_service"])]
router = APIRouter(tags=["verified queries"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 503)
})
MAX_OFFSET = 2**31 - 1
Question = Field(default=None, min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S")
Sql = Field(default=None, min_length=1, max_length=MAX_SQL_CHARS, pattern=r"\S")


class VerifiedQueryIn(BaseModel):
    """Either an answer to promote (`session_id` and `message_id`) or a `question` with its `sql`."""

    model_config = ConfigDict(extra="ignore")

    session_id: str | None = Field(default=None, min_length=1, max_length=64)
    message_id: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="a completed answer: its question and the last SQL its run executed")
    question: str | None = Question
    sql: str | None = Sql

    @model_validator(mode="after")
    def _one_source(self) -> "VerifiedQueryIn":
        promoted = self.session_id is not None and self.message_id is not None
        written = self.question is not None and self.sql is not None
        if promoted == written:
            raise ValueError("give either session_id and message_id, or question and sql")
        return self


class VerifiedQueryPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str | None = Question
    sql: str | None = Sql

    @model_validator(mode="after")
    def _something(self) -> "VerifiedQueryPatch":
        if self.question is None and self.sql is None:
            raise ValueError("give question, sql or both")
        return self


class VerifiedQueryOut(BaseModel):
    query_id: str
    question: str
    sql: str
    created_by: str = Field(description="the principal that created it")
    created_at: datetime
    updated_at: datetime
    source_message_id: str | None = Field(description="the answer it was promoted from, if any")

    @classmethod
    def from_domain(cls, q: VerifiedQuery) -> "VerifiedQueryOut":
        return cls(query_id=q.query_id, question=q.question, sql=q.sql, created_by=q.created_by,
                   created_at=q.created_at, updated_at=q.updated_at, source_message_id=q.source_message_id)


class VerifiedQueryList(BaseModel):
    verified_queries: list[VerifiedQueryOut]
    total: int
    limit: int
    offset: int


@router.post("/verified-queries", status_code=201)
@inject
async def create_verified_query(body: VerifiedQueryIn, principal: Admin, service: Service) -> VerifiedQueryOut:
    """Promote a completed answer (of any session) with the SQL its run executed, or store a question and SQL."""
    if body.message_id is not None and body.session_id is not None:
        query = await service.promote(principal, body.session_id, body.message_id)
    else:
        query = await service.create(principal, body.question or "", body.sql or "")
    return VerifiedQueryOut.from_domain(query)


@router.get("/verified-queries")
@inject
async def list_verified_queries(
    principal: Admin, service: Service, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> VerifiedQueryList:
    """The verified queries, oldest first."""
    queries, total = await service.list(limit, offset)
    return VerifiedQueryList(verified_queries=[VerifiedQueryOut.from_domain(q) for q in queries], total=total,
                             limit=limit, offset=offset)


@router.get("/verified-queries/{query_id}")
@inject
async def get_verified_query(query_id: str, principal: Admin, service: Service) -> VerifiedQueryOut:
    return VerifiedQueryOut.from_domain(await service.get(query_id))


@router.patch("/verified-queries/{query_id}")
@inject
async def update_verified_query(
    query_id: str, body: VerifiedQueryPatch, principal: Admin, service: Service
) -> VerifiedQueryOut:
    """Change its question, its SQL or both."""
    return VerifiedQueryOut.from_domain(await service.update(query_id, body.question, body.sql))


@router.delete("/verified-queries/{query_id}", status_code=204, response_class=Response)
@inject
async def delete_verified_query(query_id: str, principal: Admin, service: Service) -> Response:
    await service.delete(query_id)
    return Response(status_code=204)
