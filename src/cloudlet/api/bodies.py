"""Generation request bodies, validated by pydantic-core straight from their bytes.

A body parameter costs FastAPI, per request, a Content-Type parse (``email.message``), a JSON
parse by the standard library, dependency solving and a validation of the parsed dict: 3 % of
the instructions of a routed chat request (``callgrind``, benchmarks/count_gateway.py). The
generation endpoints, the hot path, read their body with :func:`read_body` instead: one
``model_validate_json``, parsing and validating in Rust. The result is the same:

- a malformed or invalid body raises the :class:`RequestValidationError` FastAPI would, with
  the same ``body``-rooted locations, so the client gets the same 400 envelope;
- :func:`request_body` documents the body in OpenAPI as FastAPI would (``openapi_extra``), and
  :func:`schemas` gives the components the app's OpenAPI hook adds for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import Schema
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema

M = TypeVar("M", bound=BaseModel)

REF = "#/components/schemas/{model}"


async def read_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or FastAPI's validation error for it."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        sent = f"the Content-Type is {content_type!r}" if content_type else "no Content-Type"
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": sent},
                }
            ]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=raw) from None


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, parameters aside (as FastAPI reads it)."""
    mime = (content_type or "").partition(";")[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The route's ``openapi_extra`` for a required JSON body of ``model``."""
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """OpenAPI components for ``models`` as request bodies, nested models included, in the
    form FastAPI gives its own (through its OpenAPI ``Schema`` model, without nulls)."""
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in models]
    _, top = models_json_schema(keyed, ref_template=REF)
    return {
        name: jsonable_encoder(Schema.model_validate(schema), by_alias=True, exclude_none=True)
        for name, schema in top.get("$defs", {}).items()
    }
