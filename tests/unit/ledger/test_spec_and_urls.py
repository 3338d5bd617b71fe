from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloudlet.config.storage import CostSpec, StorageSpec
from cloudlet.ledger.db import default_ledger_url, display_url, parse_url


def test_storage_defaults_and_urls() -> None:
    spec = StorageSpec()
    assert spec.ledger is None and spec.counters == "memory"
    assert StorageSpec(ledger="postgresql://u@h/db", counters="redis://r:6379/1").counters
    with pytest.raises(ValidationError) as info:
        StorageSpec(ledger="mysql://user:hunter2@h/db")
    assert "hunter2" not in str(info.value.errors()[0]["msg"])
    with pytest.raises(ValidationError):
        StorageSpec(counters="memcached://x")
    with pytest.raises(ValidationError):
        StorageSpec.model_validate({"ledger": "sqlite:///x.db", "unknown": 1})


def test_cost_spec_validates() -> None:
    with pytest.raises(ValidationError):
        CostSpec.model_validate({"hardware_per_hour": -1})
    with pytest.raises(ValidationError):
        CostSpec.model_validate({"hardware_per_hour": 1, "currency": "usd"})


def test_urls_pick_async_drivers_and_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    url, schema = parse_url("sqlite:///~/data/ledger.db")
    assert url.drivername == "sqlite+aiosqlite" and url.database == "/home/someone/data/ledger.db"
    assert schema is None
    url, schema = parse_url("postgres://root@127.0.0.1:5432/test?schema=tenant_a")
    assert url.drivername == "postgresql+asyncpg" and schema == "tenant_a"
    assert "schema" not in url.query
    for bad in ("sqlite://", "postgresql://h/db?schema=Bad-Name", "mysql://h/db"):
        with pytest.raises(ValueError):
            parse_url(bad)
    assert "secret" not in display_url("postgresql://u:secret@h/db")


def test_default_ledger_lives_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_ledger_url() == f"sqlite:///{tmp_path}/cloudlet/ledger.db"
