"""Validation against the JSON schemas of the job-type catalog (for types this process did
not register itself, e.g. an API gateway that does not import the job code)."""

from __future__ import annotations

from typing import Any

import jsonschema

from conveyor.errors import InvalidArguments


def validate_with_schema(schema: dict[str, Any], args: Any, field: str, type_: str) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    if error is None:
        return
    path = ".".join([field, *(str(p) for p in error.absolute_path)])
    raise InvalidArguments(path, f"{path}: {error.message} (job type {type_!r})")
