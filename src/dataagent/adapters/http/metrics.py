"""GET /metrics: the Prometheus exposition (docs/OPERATIONS.md), behind the API key unless
DATAAGENT_METRICS_PUBLIC=true; not routed at all with DATAAGENT_METRICS=false (404)."""

from typing import Annotated, Protocol

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import Response

from dataagent.adapters.http.auth import require_principal
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.schemas import ErrorBody


class Exposition(Protocol):
    def exposition(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format, and its content type."""
        ...


@inject
async def metrics(telemetry: Annotated[Exposition, Depends(Provide["telemetry"])]) -> Response:
    body, content_type = telemetry.exposition()
    return Response(body, media_type=content_type)


def install_metrics(app: FastAPI, public: bool) -> None:
    """Route GET /metrics; with the API key checked like any route unless `public` (a scraper without one)."""
    router = APIRouter(tags=["operations"])
    dependencies = [] if public else [Depends(require_principal)]
    responses: dict[int | str, dict[str, object]] = {
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The text format"}}
    if not public:
        responses[401] = {"model": ErrorBody}
    router.add_api_route("/metrics", metrics, methods=["GET"], dependencies=dependencies,
                         response_class=Response, summary="Prometheus metrics", responses=responses)
    app.include_router(router)
