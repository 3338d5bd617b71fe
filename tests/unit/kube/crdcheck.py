"""Check objects against the Model CRD as an API server would: defaults, the OpenAPI v3 schema,
then every ``x-kubernetes-validations`` CEL rule, each evaluated with ``self`` bound to its node.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
from openapi_schema_validator import OAS30Validator

from cloudlet.kube.crd import model_crd

Schema = dict[str, Any]


def crd_schema() -> Schema:
    version = model_crd()["spec"]["versions"][0]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def problems(obj: Any, schema: Schema | None = None) -> list[str]:
    """Everything wrong with ``obj`` (a whole Model by default); [] when it is valid."""
    schema = crd_schema() if schema is None else schema
    obj = apply_defaults(copy.deepcopy(obj), schema)
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in OAS30Validator(schema).iter_errors(obj)
    ]
    if not found:
        found += cel_problems(obj, schema, "")
    return found


def status_problems(status: Any) -> list[str]:
    return problems(status, crd_schema()["properties"]["status"])


def apply_defaults(obj: Any, schema: Schema) -> Any:
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                apply_defaults(obj[key], sub)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            apply_defaults(item, schema["items"])
    return obj


def cel_problems(obj: Any, schema: Schema, path: str) -> list[str]:
    found: list[str] = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        try:
            ok = program.evaluate({"self": celpy.json_to_cel(obj)})
        except celpy.CELEvalError as exc:  # an API server reports these as failures too
            ok = False
            rule = {**rule, "message": f"{rule.get('message')} ({exc})"}
        if not isinstance(ok, celpy.celtypes.BoolType) or not bool(ok):
            found.append(f"{path or '(root)'}: {rule.get('message', rule['rule'])}")
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in obj:
                found += cel_problems(obj[key], sub, f"{path}/{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += cel_problems(item, schema["items"], f"{path}/{i}")
    return found
