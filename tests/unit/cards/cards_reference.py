"""The MOF reference data in ``shared/reference/mof`` (the Model Openness Tool's test oracle).

``shared/`` sits beside the repository checkout (read-only in CI); CLOUDLET_SHARED_DIR points
elsewhere. A missing directory fails the tests loudly: the reference data is the oracle.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any


def shared_dir() -> Path:
    override = os.environ.get("CLOUDLET_SHARED_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[3].parent / "shared"
    assert path.is_dir(), f"shared reference data not found at {path} (set CLOUDLET_SHARED_DIR)"
    return path


def mof_dir() -> Path:
    return shared_dir() / "reference" / "mof"


def reference_files() -> list[Path]:
    """The tool's test records, Test_Data/*.yml."""
    return sorted((mof_dir() / "Test_Data").glob("*.yml"))


def expected_results() -> dict[str, dict[str, Any]]:
    """expected_results.json by release name; the file has trailing commas, hence the regex."""
    text = (mof_dir() / "Test_Data" / "expected_results.json").read_text(encoding="utf-8")
    data = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
    return {m["release"]["name"]: m["classification"] for m in data["models"]}


def mof_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (mof_dir() / "schema" / "mof_schema.json").read_text(encoding="utf-8")
    )
    return schema
