"""What every app's OpenAPI document must say so that clients (and the schema fuzzer in
tests/assurance) can trust it, and the bounds of the integers the apps store.

* The apps refuse bad input in two shapes: FastAPI's own validation (``detail`` is a list of
  errors) and their own checks (``detail`` is one sentence naming the problem). FastAPI documents
  only the first for 422; ``document_error_details`` makes the schema say both.
* ``DB_INT_MAX``: the largest integer SQLite and PostgreSQL ``BIGINT`` columns hold. An id,
  cursor or amount above it must be refused as bad input (422), not reach the database (where
  SQLite raises ``OverflowError`` and the request died with a 500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query

DB_INT_MAX = 2**63 - 1
# A database row id in a path, and an optional id or paging cursor in a query: 1..DB_INT_MAX.
DbId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]
DbIdQuery = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]


def document_error_details(app: FastAPI) -> None:
    """Make the app's OpenAPI ``HTTPValidationError.detail`` a list of errors *or* a sentence."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        component = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if component is not None:
            listed = component.get("properties", {}).get("detail")
            if listed is not None and "anyOf" not in listed:
                component["properties"]["detail"] = {
                    "anyOf": [
                        {key: value for key, value in listed.items() if key != "title"},
                        {"type": "string"},
                    ],
                    "title": "Detail",
                }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
