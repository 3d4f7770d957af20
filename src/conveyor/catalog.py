"""Validation against the JSON schemas of the job-type catalog (for types this process did
not register itself, e.g. an API gateway that does not import the job code), and the check
that an app does not take over a name another app in the same Redis registered."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jsonschema

from conveyor import serde
from conveyor.errors import InvalidArguments

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.catalog")


def validate_with_schema(schema: dict[str, Any], args: Any, field: str, type_: str) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    if error is None:
        return
    path = ".".join([field, *(str(p) for p in error.absolute_path)])
    raise InvalidArguments(path, f"{path}: {error.message} (job type {type_!r})")


async def warn_on_conflicts(app: Conveyor) -> list[str]:
    """Warn about each job type ``app`` registers that the catalog already holds with other
    arguments or another queue: another app in the same Redis (same prefix) uses the name,
    and the two will take each other's jobs. Returns those names."""
    names = sorted(app.registry)
    if not names:
        return []
    stored = await app.redis.hmget(app.keys.glob.catalog, names)
    conflicts = []
    for name, raw in zip(names, stored, strict=True):
        theirs = serde.loads(raw) if raw else None
        if not isinstance(theirs, dict):
            continue
        ours = serde.loads(serde.dumps(app.registry[name].catalog_entry()))  # as JSON reads
        if (theirs.get("schema"), theirs.get("queue")) != (ours["schema"], ours["queue"]):
            conflicts.append(name)
            log.warning(
                "job type %r is already in the catalog with other arguments or queue "
                "(queue %r, arguments %s; here: queue %r, arguments %s): another app in this "
                "Redis uses the name. Give one of them its own, e.g. "
                "@app.job(name=\"billing.%s\"), or its own CONVEYOR_PREFIX", name,
                theirs.get("queue"), sorted((theirs.get("schema") or {}).get("properties", {})),
                ours["queue"], sorted(ours["schema"].get("properties", {})), name)
    return conflicts
