"""Load the spec once at start-up: defaults < cloudlet.yaml < CLOUDLET_* environment < flags.

Environment variables name a path in the spec with ``__`` between levels and list indexes as
numbers: ``CLOUDLET_SERVER__PORT=9000``, ``CLOUDLET_MODELS__0__PARALLEL=4``. Values are read as
YAML scalars, so ``9000`` is a number and ``true`` a boolean. pydantic-settings' env source
cannot address list items, which the models list needs; hence this small merge.

Every problem becomes a :class:`~cloudlet.errors.SpecError` that names the source, the field
and what was expected.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cloudlet.config.spec import Spec
from cloudlet.errors import SpecError

DEFAULT_SPEC_FILE = "cloudlet.yaml"
ENV_PREFIX = "CLOUDLET_"
_Path = tuple[str | int, ...]


def load_spec(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Spec:
    """Build the spec. ``path=None`` reads ./cloudlet.yaml when it exists, else the defaults.

    ``overrides`` maps dotted paths (``server.port``) to values given as CLI flags.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is None and Path(DEFAULT_SPEC_FILE).is_file():
        path = DEFAULT_SPEC_FILE
    env_values = _env_overrides(env)
    flags = any(v is not None for v in (overrides or {}).values())
    if path is not None:
        source = str(path)
    elif env_values:
        source = "the CLOUDLET_* environment variables"
    else:
        source = "the command line" if flags else "the built-in defaults"

    data = _read_file(Path(path)) if path is not None else {}
    origin: dict[_Path, str] = {}
    for key, value in env_values.items():
        _set(data, key, value, source)
        origin[key] = ENV_PREFIX + "__".join(str(p).upper() for p in key)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        key = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
        _set(data, key, value, source)
        origin[key] = "--" + str(key[-1]).replace("_", "-")

    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _problems(exc, origin)) from exc
    if path is not None:
        spec = _resolve_relative_files(spec, Path(path).parent)
    return spec


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [("(file)", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [("(file)", f"cannot be read: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), [(where, f"not valid YAML: {problem}")]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(
            str(path), [("(top level)", f"expected a mapping, got {type(data).__name__}")]
        )
    return data


def _env_overrides(env: Mapping[str, str]) -> dict[_Path, Any]:
    known = set(Spec.model_fields)
    out: dict[_Path, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in known:
            continue  # CLOUDLET_CONFIG, CLOUDLET_ADMIN_KEY and the like are not spec paths
        key = tuple(int(p) if p.isdigit() else p for p in parts)
        try:
            out[key] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            out[key] = raw
    return out


def _set(data: dict[str, Any], key: _Path, value: Any, source: str) -> None:
    node: Any = data
    for i, part in enumerate(key[:-1]):
        nxt = key[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                field = ".".join(map(str, key))
                raise SpecError(source, [(field, f"no list item {part} to override")])
            node = node[part]
            continue
        if part == "models" and part not in node:
            node[part] = [m.model_dump() for m in Spec().models]
        node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = key[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SpecError(source, [(".".join(map(str, key)), "no such list item")])
        node[last] = value
    else:
        node[last] = value


def _problems(exc: ValidationError, origin: dict[_Path, str]) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field" + _expected_fields(loc)
        elif err["type"] == "missing":
            message = "required field is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            message = f"{message} (got {err['input']!r})"
        for key, where in origin.items():
            if loc[: len(key)] == key:
                message += f" [from {where}]"
        problems.append((field or "(top level)", message))
    return problems


def _expected_fields(loc: tuple[Any, ...]) -> str:
    """The fields of the model that holds the unknown one (``price:``'s, not the model's)."""
    owner: type[BaseModel] | None = Spec
    for part in loc[:-1]:
        if isinstance(part, int) or owner is None:
            continue  # a list item: the model is the list's
        field = owner.model_fields.get(part)
        owner = _model_in(field.annotation) if field is not None else None
    if owner is None:
        return ""
    return "; expected one of: " + ", ".join(owner.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _resolve_relative_files(spec: Spec, base: Path) -> Spec:
    """Relative paths in a spec file (``file://x.gguf``, ``card.mof_file``) are relative to
    that file, not to the working directory."""
    models = []
    for model in spec.models:
        rest = model.source.removeprefix("file://")
        if model.source.startswith("file://") and not rest.startswith("/"):
            model = model.model_copy(update={"source": "file://" + str((base / rest).resolve())})
        if model.card is not None:
            model = model.model_copy(update={"card": model.card.resolved(base)})
        models.append(model)
    return spec.model_copy(update={"models": models})
