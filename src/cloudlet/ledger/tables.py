"""The ledger's tables, as SQLAlchemy Core (no ORM: rows are written in batches and read as
aggregates, never as objects with identity).

Money columns hold integer nanos (1e-9 of the currency), not ``NUMERIC``: SQLite has no
decimal type (SQLAlchemy would store floats there), and integers sum exactly in SQL on both
databases. :class:`~cloudlet.pricing.Money` converts at the edges.

The migrations in ``migrations/versions`` are the truth for the schema; these definitions
must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    false,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite stores them naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only
NANOS = BigInteger

# Deterministic constraint names, so that migrations can refer to them on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, index=True),
    Column("team", String(128), nullable=False, index=True),
    Column("models", JSON, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_nanos", NANOS, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("period", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

usage = Table(
    "usage",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("team", String(128), nullable=True),
    Column("model", String(128), nullable=False),
    Column("route", String(128), nullable=True),
    Column("target", String(128), nullable=True),
    Column("spilled", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_nanos", NANOS, nullable=False),
    Column("cloud_equivalent_nanos", NANOS, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error", String(64), nullable=True),
    # Ran on a `cloud: true` target; else on our own hardware (local or self-hosted remote).
    Column("cloud", Boolean, nullable=False, server_default=false()),
    # The client's own x-request-id (echoed back; not unique: clients reuse ids).
    Column("client_request_id", String(64), nullable=True),
    Index("ix_usage_ts", "ts"),
    Index("ix_usage_key_ts", "key_id", "ts"),
    Index("ix_usage_client_request_id", "client_request_id"),
)

# Stored Responses API answers (`store: true`), so that `previous_response_id` can continue a
# conversation: the whole conversation up to and including the answer, as chat messages.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("team", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("conversation", JSON, nullable=False),
    Column("response", JSON, nullable=False),
)
