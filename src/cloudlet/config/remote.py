"""Spec parts for remote engines (``engine: openai``) and for routes.

Kept apart from :mod:`cloudlet.config.spec` so that the model list stays readable; the
cross-checks that need the whole spec (a route names existing models, prices share the
budget's currency) live on :class:`~cloudlet.config.spec.Spec`.

Secrets never sit in a spec file: ``api_key`` (and any ``${VAR}`` in a header value) is a
reference resolved from the environment when the engine starts, so dumping a spec is safe.
Validation messages about these fields never repeat the value they reject.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CURRENCY = r"^[A-Z]{3}$"
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type"}
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
Policy = Literal["local-first", "fallback", "weighted", "cheapest", "fastest"]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_upstream_url(value: str) -> str:
    """An http(s) base URL without credentials, query or fragment (``…/v1``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// base URL such as https://host/v1")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL would be logged; use api_key: ${VAR}")
    if parts.query or parts.fragment:
        raise ValueError("expected a base URL without ?query or #fragment")
    return value.rstrip("/")


def check_api_key(value: str | None) -> str | None:
    if value is not None and not ENV_REF.fullmatch(value):
        # The value is not echoed: it may be a real key pasted into the file.
        raise ValueError(
            "expected an environment reference such as ${OPENAI_API_KEY}; "
            "keys are not written into spec files"
        )
    return value


def missing_env(
    api_key: str | None, headers: dict[str, str], environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(field, variable) for each ``${VAR}`` that ``environ`` does not set."""
    fields = [("api_key", api_key)] if api_key is not None else []
    fields += [(f"headers.{name}", value) for name, value in headers.items()]
    return [
        (field, name)
        for field, value in fields
        for name in ENV_REF.findall(value)
        if name not in environ
    ]


def check_headers(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"header {name!r} is set by cloudlet itself")
    return value


class PriceSpec(_Strict):
    """What an upstream charges, per million tokens, in ``currency``."""

    input_per_mtok: Money
    output_per_mtok: Money
    currency: str = Field("USD", pattern=_CURRENCY, description="ISO 4217 code")


class TimeoutsSpec(_Strict):
    connect_s: float = Field(5.0, gt=0, description="to open a connection")
    first_token_s: float = Field(
        60.0, gt=0, description="from sending the request to the first token (then failover)"
    )
    read_s: float = Field(60.0, gt=0, description="longest silence between two chunks")


class HealthCheckSpec(_Strict):
    interval_s: float = Field(10.0, ge=0, description="0 turns active checks off")
    timeout_s: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1, description="consecutive failed checks")


class BreakerSpec(_Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(30.0, gt=0, description="open time before one trial request")


class TargetSpec(_Strict):
    model: str
    weight: float = Field(1.0, gt=0, description="share under the weighted policy")


class SpillSpec(_Strict):
    max_queue_wait_ms: int = Field(
        2000, ge=0, description="local estimated queue wait above which requests spill"
    )


class CloudBudgetSpec(_Strict):
    """A cap on what a route spends on ``cloud: true`` targets per calendar day or month (UTC)."""

    per_day: Money | None = None
    per_month: Money | None = None
    currency: str = Field(pattern=_CURRENCY, description="ISO 4217 code, e.g. USD")
    when_spent: Literal["queue", "reject"] = Field(
        "queue", description="queue: wait for local capacity; reject: 429 with Retry-After"
    )

    @model_validator(mode="after")
    def _one_period(self) -> CloudBudgetSpec:
        if (self.per_day is None) == (self.per_month is None):
            raise ValueError("give exactly one of per_day and per_month")
        return self

    @property
    def period(self) -> Literal["day", "month"]:
        return "day" if self.per_day is not None else "month"

    @property
    def limit(self) -> Decimal:
        amount = self.per_day if self.per_day is not None else self.per_month
        assert amount is not None
        return amount


class RetrySpec(_Strict):
    max_attempts: int = Field(3, ge=1, le=10, description="tries in all, across targets")
    backoff_ms: int = Field(20, ge=0, description="first backoff; doubles, with full jitter")
    max_backoff_ms: int = Field(1000, ge=0)


class RouteSpec(_Strict):
    """A public model name mapped to targets (served models) with a policy."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
    targets: Annotated[list[TargetSpec], Field(min_length=1)]
    policy: Policy = "fallback"
    spill: SpillSpec = Field(default_factory=lambda: SpillSpec())
    cloud_budget: CloudBudgetSpec | None = None
    retry: RetrySpec = Field(default_factory=lambda: RetrySpec())

    @field_validator("targets", mode="before")
    @classmethod
    def _names_as_targets(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": t} if isinstance(t, str) else t for t in value]
        return value

    @model_validator(mode="after")
    def _distinct_targets(self) -> RouteSpec:
        names = [t.model for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("a model appears twice in targets")
        return self
