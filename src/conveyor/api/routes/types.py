"""``/api/types``: the job-type catalog (what may be submitted, with argument schemas)."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api.deps import Caller
from conveyor.api.errors import responses
from conveyor.api.models import JobTypeOut

router = APIRouter(prefix="/api/types", tags=["types"])


@router.get("", response_model=list[JobTypeOut], summary="Job types and their argument schemas",
            responses=responses(401, 429, 503))
async def list_types(call: Caller) -> list[JobTypeOut]:
    catalog = await call.conveyor.catalog()
    return [JobTypeOut.from_entry(name, entry) for name, entry in sorted(catalog.items())]
