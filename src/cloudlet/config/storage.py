"""The spec's ``storage:`` block (top level) and a model's ``cost:`` block, as pydantic models.

Validation only, no I/O, and nothing heavier than pydantic is imported, because
:mod:`cloudlet.config.spec` imports this module::

    storage:
      ledger: postgresql://cloudlet@db/cloudlet     # default: SQLite under the data directory
      counters: redis://redis:6379/0                # default: memory (one replica)
    models:
      - name: smollm2
        cost:
          hardware_per_hour: 0.10                   # what the machine costs, busy or not
          cloud_equivalent: {input_per_mtok: 0.18, output_per_mtok: 0.18}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudlet.pricing import DEFAULT_REFERENCE, LocalPricer, Price

_CURRENCY = r"^[A-Z]{3}$"
_Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)]
_LEDGER_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSpec(_Strict):
    """Where the ledger (keys, usage rows) and the counters (limits, budgets) live."""

    ledger: str | None = Field(
        None,
        description="sqlite:///path or postgresql://user@host/db (default: SQLite in the user "
        "data directory, e.g. ~/.local/share/cloudlet/ledger.db); `off`: no keys, no ledger",
    )
    counters: str = Field(
        "memory", description="memory (one replica) or redis://host:6379/0 (shared by replicas)"
    )
    ledger_batch_rows: int = Field(256, ge=1, le=10_000, description="rows per ledger write")
    ledger_flush_ms: int = Field(
        200,
        ge=1,
        le=60_000,
        description="longest a finished request's row waits in memory before it is written; "
        "a crash loses at most this window's rows",
    )

    @field_validator("ledger", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    @field_validator("ledger")
    @classmethod
    def _ledger_url(cls, value: str | None) -> str | None:
        if value is None or value == "off":
            return value
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _LEDGER_SCHEMES:
            # The URL is not repeated: it may carry a password.
            raise ValueError("expected sqlite:///path, postgresql://user@host/database or off")
        return value

    @field_validator("counters")
    @classmethod
    def _counters_url(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected memory or redis://host:port/db")
        return value


class CloudPriceSpec(_Strict):
    input_per_mtok: _Money
    output_per_mtok: _Money
    currency: str = Field("USD", pattern=_CURRENCY)

    def price(self) -> Price:
        return Price(self.input_per_mtok, self.output_per_mtok, self.currency)


class CostSpec(_Strict):
    """A local model's cost: its hardware per hour, priced per token by measured throughput."""

    hardware_per_hour: _Money = Field(description="what the machine (or its share) costs per hour")
    currency: str = Field("USD", pattern=_CURRENCY, description="ISO 4217 code")
    assumed_tokens_per_second: float | None = Field(
        None,
        gt=0,
        le=1e9,
        description="decode rate (generated tokens/s) to assume until the engine has measured "
        "its own (default 20)",
    )
    assumed_prompt_tokens_per_second: float | None = Field(
        None,
        gt=0,
        le=1e9,
        description="prefill rate (prompt tokens/s) to assume until measured (default 200)",
    )
    cloud_equivalent: CloudPriceSpec | None = Field(
        None,
        description="reference cloud price for the same tokens (default: an 8B-class hosted "
        "open model, USD 0.18 per million tokens in and out)",
    )

    def pricer(self) -> LocalPricer:
        return LocalPricer(
            self.hardware_per_hour,
            self.currency,
            assumed_tokens_per_second=self.assumed_tokens_per_second,
            assumed_prompt_tokens_per_second=self.assumed_prompt_tokens_per_second,
        )

    def reference(self) -> Price:
        return self.cloud_equivalent.price() if self.cloud_equivalent else DEFAULT_REFERENCE
