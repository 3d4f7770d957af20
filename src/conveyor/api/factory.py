"""``create_app``: the gateway's FastAPI app for one ``Conveyor``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from conveyor import __version__
from conveyor.api.dashboard import mount_dashboard
from conveyor.api.deps import limit_static
from conveyor.api.direct import direct_routes
from conveyor.api.errors import ErrorResponse, install_handlers
from conveyor.api.gateway import Gateway
from conveyor.api.middleware import GatewayMiddleware
from conveyor.api.models import BulkSubmission, DlqSelection, JobSubmission
from conveyor.api.openapi import install_openapi, repeatable_query_names
from conveyor.api.routes import ROUTERS, jobs
from conveyor.api.settings import ApiSettings

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.store.base import Store

DESCRIPTION = """\
Submit and steer jobs, watch queues and workers, read the job history.

**Auth**: every `/api` route needs an API key, as `Authorization: Bearer <key>` or
`X-API-Key: <key>`. Roles: `admin` (everything), `producer` (submit, read its own jobs),
`viewer` (read everything). Create keys with `conveyor keys create --role R`.

**Errors** always look like `{"error": {"code", "message", "field"}}`; `field` is the path of
the offending input (`jobs[3].args.width`, `header.idempotency-key`, `query.limit`).

**Rate limits** answer 429 with `Retry-After`; every limited response carries
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`.

**Live events**: WebSocket `/api/ws` (see docs/api.md for the protocol).
"""

TAGS = [
    {"name": "jobs", "description": "Submit, read, search and steer jobs"},
    {"name": "queues", "description": "Depths, pause/resume, dead-letter queues"},
    {"name": "workers", "description": "Live workers from their heartbeats"},
    {"name": "types", "description": "The job-type catalog"},
    {"name": "stats", "description": "Counts and time series for charts"},
    {"name": "health", "description": "Probes and Prometheus metrics"},
]


def create_app(
    conveyor: Conveyor,
    *,
    settings: ApiSettings | None = None,
    store: Store | None = None,
    admin_key: str | None = None,
    open_store: bool = True,
) -> FastAPI:
    """The API app. ``store``: a history store to use (else one is opened from
    ``conveyor.settings.store_url`` at startup, unless ``open_store`` is False);
    ``admin_key``: a bootstrap admin key (default: ``CONVEYOR_ADMIN_KEY``)."""
    gateway = Gateway.build(conveyor, settings or ApiSettings(), admin_key=admin_key, store=store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start(open_store)
        try:
            yield
        finally:
            await gateway.stop()

    # /docs and /openapi.json are added below, behind the per-client-IP limit of pages.
    app = FastAPI(title="Conveyor API", version=__version__, description=DESCRIPTION,
                  openapi_tags=TAGS, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.gateway = gateway
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app, [JobSubmission, BulkSubmission, DlqSelection, ErrorResponse])
    app.add_middleware(
        GatewayMiddleware, max_body_bytes=gateway.settings.max_body_bytes,
        body_timeout=gateway.settings.body_timeout_seconds,
        observe=gateway.metrics.observe_request, repeatable=repeatable_query_names(app),
        direct=direct_routes(jobs.router, jobs.DIRECT))
    _add_docs(app)
    mount_dashboard(app, limit=limit_static)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/openapi.json`` and the Swagger UI at ``/docs``, limited per client IP like the
    dashboard (CONVEYOR_API_STATIC_RATE_LIMIT)."""
    limited = [Depends(limit_static)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=limited)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=limited)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")
