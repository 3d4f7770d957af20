"""``/healthz`` (the process answers), ``/readyz`` (Redis and the history store answer) and
``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from conveyor.api import views
from conveyor.api.deps import Anonymous, GatewayDep, metrics_access
from conveyor.api.errors import responses
from conveyor.api.metrics import CONTENT_TYPE
from conveyor.api.models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers",
            dependencies=[Anonymous], responses=responses(429))
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, summary="Readiness: Redis and store answer",
            dependencies=[Anonymous],
            responses={503: {"model": Readiness, "description": "Redis or store unavailable"},
                       **responses(429)})
async def readyz(gateway: GatewayDep) -> Response:
    ready = await views.readiness(gateway)
    return JSONResponse(ready.model_dump(), status_code=200 if ready.status == "ready" else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"},
                       **responses(401, 403, 429, 503)})
async def metrics(
    gateway: GatewayDep, access: Annotated[None, Depends(metrics_access)]
) -> Response:
    body = await gateway.metrics.render(gateway.conveyor)
    return Response(body, media_type=CONTENT_TYPE)
