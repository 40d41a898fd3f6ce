"""GET /api/v1/health: public liveness and readiness."""


from dependency_injector.wiring import inject
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dataagent import __version__
from dataagent.adapters.http.deps import Status
from dataagent.adapters.http.schemas import Health, HealthChecks

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
@inject
async def health(status: Status) -> JSONResponse:
    report = await status.report()
    body = Health(
        status="ok" if report.ok else "degraded", version=__version__, uptime=report.uptime_s,
        store=report.store, broker=report.broker, agent=report.agent,
        checks=HealthChecks(store=report.store_check, broker=report.broker_check),
        active_runs=report.active_runs, connections=report.connections,
    )
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 503)
