"""GET /api/v1/schema: the data source's tables and columns with the semantic file's words, for frontends."""


from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dataagent.adapters.http.deps import Principal
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody
from dataagent.application.catalog import SchemaCatalog, SchemaInfo

Catalog = Annotated[SchemaCatalog, Depends(Provide["schema_catalog"])]
router = APIRouter(tags=["schema"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 422, 503)
})


class ColumnOut(BaseModel):
    name: str
    type: str = Field(description="The type as the database reports it")
    nullable: bool
    description: str = ""
    synonyms: list[str] = []
    examples: list[str | int | float | bool] = []


class TableOut(BaseModel):
    name: str
    description: str = ""
    synonyms: list[str] = []
    columns: list[ColumnOut]


class JoinOut(BaseModel):
    from_column: str = Field(alias="from", description="table.column")
    to: str = Field(description="table.column")
    description: str = ""


class TermOut(BaseModel):
    name: str
    definition: str
    synonyms: list[str] = []


class SchemaOut(BaseModel):
    description: str = ""
    tables: list[TableOut]
    relationships: list[JoinOut]
    terms: list[TermOut]

    @classmethod
    def from_domain(cls, info: SchemaInfo) -> "SchemaOut":
        return cls(
            description=info.description,
            tables=[
                TableOut(name=t.name, description=t.description, synonyms=list(t.synonyms), columns=[
                    ColumnOut(name=c.name, type=c.type, nullable=c.nullable, description=c.description,
                              synonyms=list(c.synonyms), examples=list(c.examples))
                    for c in t.columns
                ])
                for t in info.tables
            ],
            relationships=[
                JoinOut.model_validate({"from": j.from_column, "to": j.to_column, "description": j.description})
                for j in info.relationships
            ],
            terms=[TermOut(name=t.name, definition=t.definition, synonyms=list(t.synonyms)) for t in info.terms],
        )


@router.get("/schema", response_model_by_alias=True)
@inject
async def get_schema(principal: Principal, catalog: Catalog) -> SchemaOut:
    """The data source's tables and columns (types from the database), with the descriptions, synonyms and
    example values of DATAAGENT_SEMANTIC_FILE, its joins and its business terms; under DATAAGENT_DATA_POLICY
    only the tables and columns the caller's entry allows (an end user's own entry, else its key's)."""
    return SchemaOut.from_domain(await catalog.describe(principal.subject))
