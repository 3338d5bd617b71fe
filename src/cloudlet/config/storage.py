"""The spec's ``storage:`` block (top level) and a model's ``cost:`` block, as pydantic models.

Validation only, no I/O, and nothing heavier than pydantic is imported, because
:mod:`cloudlet.config.spec` imports this module::

    storage:
      ledger: postgresql://cloudlet@db/cloudlet     # default: SQLite under the data directory
      counters: redis://:${REDIS_PASSWORD}@redis:6379/0   # default: memory (one replica)
    models:
      - name: smollm2
        cost:
          hardware_per_hour: 0.10                   # what the machine costs, busy or not
          cloud_equivalent: {input_per_mtok: 0.18, output_per_mtok: 0.18}

Storage URLs may carry secrets: write them as ``${VAR}`` references (the whole URL or a part,
such as the password), which :meth:`StorageSpec.resolved` reads from the environment when the
server or a command opens its storage; the spec itself (and anything rendered from it) keeps
the reference. Whatever shows a URL (logs, banners, errors) shows it through :func:`mask_url`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloudlet.config.remote import ENV_REF
from cloudlet.errors import SpecError
from cloudlet.pricing import DEFAULT_REFERENCE, LocalPricer, Price

_CURRENCY = r"^[A-Z]{3}$"
_Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)]
_LEDGER_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")
_SECRET_PARAMS = frozenset({"password", "pass", "passwd", "pwd", "secret", "token"})


def mask_url(url: str) -> str:
    """``url`` with its password (and any password-like query parameter) shown as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
            )
        if "://" not in url:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        return (
            shown
            + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else "")
        )
    except ValueError:  # not a URL we can take apart: show only its scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


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

    def resolved(self, environ: Mapping[str, str] | None = None) -> StorageSpec:
        """This block with every ``${VAR}`` in its URLs read from the environment.

        Raises :class:`~cloudlet.errors.SpecError` (source ``environment``) naming the field
        and the variable when one is unset, or when the URL it makes is not one we can open;
        the message never repeats a value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = {}
        for field in ("ledger", "counters"):
            value: str | None = getattr(self, field)
            if value is None or not ENV_REF.search(value):
                continue
            missing = [n for n in ENV_REF.findall(value) if n not in env]
            if missing:
                raise SpecError(
                    "environment",
                    [(f"storage.{field}", f"refers to ${{{missing[0]}}}, which is not set")],
                )
            values[field] = ENV_REF.sub(lambda m: env[m.group(1)], value)
        if not values:
            return self
        try:
            return StorageSpec.model_validate({**self.model_dump(), **values})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            why = str(error["msg"]).removeprefix("Value error, ")
            raise SpecError("environment", [(f"storage.{field}", why)]) from None

    @field_validator("ledger")
    @classmethod
    def _ledger_url(cls, value: str | None) -> str | None:
        if value is None or value == "off" or value.startswith("${"):
            return value  # a reference is checked once resolved
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _LEDGER_SCHEMES:
            # The URL is not repeated: it may carry a password.
            raise ValueError("expected sqlite:///path, postgresql://user@host/database or off")
        return value

    @field_validator("counters")
    @classmethod
    def _counters_url(cls, value: str) -> str:
        if value.startswith("${"):
            return value  # a reference is checked once resolved
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
