"""Storage URLs: ``${VAR}`` read from the environment at start, passwords never shown."""

from __future__ import annotations

import pytest

from cloudlet.config.storage import StorageSpec, mask_url
from cloudlet.errors import SpecError


def test_env_references_are_resolved_and_the_spec_keeps_them() -> None:
    spec = StorageSpec(
        ledger="postgresql://cloudlet:${PG_PASSWORD}@db/cloudlet",
        counters="${REDIS_URL}",
    )
    env = {"PG_PASSWORD": "s3cret", "REDIS_URL": "redis://:r3dis@cache:6379/0"}
    resolved = spec.resolved(env)
    assert resolved.ledger == "postgresql://cloudlet:s3cret@db/cloudlet"
    assert resolved.counters == "redis://:r3dis@cache:6379/0"
    assert "s3cret" not in spec.model_dump_json()  # what a dump or a render carries


def test_an_unset_variable_names_field_and_variable() -> None:
    with pytest.raises(SpecError) as exc:
        StorageSpec(ledger="${LEDGER_URL}").resolved({})
    assert exc.value.problems == [("storage.ledger", "refers to ${LEDGER_URL}, which is not set")]


def test_a_resolved_url_is_still_checked_without_echoing_it() -> None:
    with pytest.raises(SpecError) as exc:
        StorageSpec(counters="${REDIS_URL}").resolved({"REDIS_URL": "mysql://u:pw@h/x"})
    field, why = exc.value.problems[0]
    assert field == "storage.counters"
    assert "pw" not in why


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:hunter2@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("postgresql://cloudlet:hunter2@db/x?schema=s", "postgresql://cloudlet:***@db/x?schema=s"),
        (
            "unix:///run/redis.sock?password=hunter2&db=1",
            "unix:///run/redis.sock?password=***&db=1",
        ),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("memory", "memory"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
