"""GET /api/v1/health: public liveness and readiness."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from dataagent import __version__
from dataagent.adapters.http.schemas import Health, HealthChecks
from dataagent.application.status import StatusService

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
@inject
async def health(status: StatusService = Depends(Provide["status_service"])) -> JSONResponse:  # noqa: B008
    report = await status.report()
    body = Health(
        status="ok" if report.ok else "degraded", version=__version__, uptime=report.uptime_s,
        store=report.store, broker=report.broker, agent=report.agent,
        checks=HealthChecks(store=report.store_check, broker=report.broker_check),
        active_runs=report.active_runs, connections=report.connections,
    )
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 503)
