"""The OpenAPI document: FastAPI's, plus the schemas of bodies read by ``deps.json_body``
(FastAPI cannot see them, since those routes parse their bodies themselves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key: `Authorization: Bearer cv_...`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "The same key, as an alternative header"},
}


def install_openapi(app: FastAPI, body_models: Sequence[type[BaseModel]]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes, tags=app.openapi_tags)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in body_models:
            model_schema = model.model_json_schema(ref_template=REF, mode="validation")
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[model.__name__] = model_schema
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        _secure(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _secure(schema: dict[str, Any]) -> None:
    """Every ``/api`` operation needs a key (auth is checked in one dependency that reads the
    headers itself, so FastAPI cannot document it)."""
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}, {"apiKey": []}]


def repeatable_query_names(app: FastAPI) -> frozenset[str]:
    """Query parameters some operation documents as an array (``?arg=a&arg=b``). Any other
    parameter given twice is refused by the middleware: FastAPI would silently keep the last
    value, so ``?queue=a&queue=b`` would read one queue while the caller asked for two."""
    names: set[str] = set()
    for operations in app.openapi().get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", ()):
                if param.get("in") == "query" and _allows_array(param.get("schema", {})):
                    names.add(param["name"])
    return frozenset(names)


def _allows_array(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_allows_array(s) for s in [*schema.get("anyOf", ()), *schema.get("oneOf", ())])
