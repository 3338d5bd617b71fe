"""The spec's remote-engine fields and routes: what is accepted, and errors that name the field."""

from decimal import Decimal
from pathlib import Path

import pytest

from cloudlet.config import load_spec
from cloudlet.errors import SpecError

GOOD = """
models:
  - name: smollm2
    source: file:///models/smollm2.gguf
  - name: vllm
    engine: openai
    urls: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1/]
    upstream_model: Qwen/Qwen2.5-7B-Instruct
    balance: prefix-affinity
  - name: mistral-small
    engine: openai
    url: https://cloud.example/v1
    api_key: ${MISTRAL_API_KEY}
    headers: {X-Team: "${TEAM}", X-Source: cloudlet}
    timeouts: {connect_s: 2, first_token_s: 20, read_s: 30}
    price: {input_per_mtok: 0.20, output_per_mtok: 0.60}
    cloud: true
routes:
  - name: chat
    targets: [smollm2, vllm, mistral-small]
    policy: local-first
    spill: {max_queue_wait_ms: 1500}
    cloud_budget: {per_day: 20.00, currency: USD, when_spent: reject}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(text)
    return load_spec(path, environ={})


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, text)
    return exc.value.message


def test_a_full_spec_loads(tmp_path: Path) -> None:
    spec = load(tmp_path, GOOD)
    vllm, cloud = spec.models[1], spec.models[2]  # type: ignore[attr-defined]
    assert vllm.replica_urls == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert vllm.source == "" and not vllm.cloud
    assert cloud.price.input_per_mtok == Decimal("0.20") and cloud.price.currency == "USD"
    assert cloud.api_key == "${MISTRAL_API_KEY}"  # the reference, never the value
    route = spec.routes[0]  # type: ignore[attr-defined]
    assert [t.model for t in route.targets] == ["smollm2", "vllm", "mistral-small"]
    assert route.cloud_budget.limit == Decimal("20.00") and route.cloud_budget.period == "day"


def test_a_literal_api_key_is_refused_without_being_repeated(tmp_path: Path) -> None:
    text = GOOD.replace("${MISTRAL_API_KEY}", "sk-live-123456")
    message = problems(tmp_path, text)
    assert "models[2].api_key" in message and "${OPENAI_API_KEY}" in message
    assert "sk-live-123456" not in message


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        (("    source: file:///models/smollm2.gguf\n", ""), "models[0].source", "missing"),
        (("    url: https://cloud.example/v1\n", ""), "models[2]", "exactly one of url and urls"),
        (("https://cloud.example/v1", "ftp://x/v1"), "models[2].url", "http"),
        (("https://cloud.example/v1", "https://u:p@x/v1"), "models[2].url", "credentials"),
        (("X-Team", "Host"), "models[2].headers", "set by cloudlet"),
        (("[smollm2, vllm, mistral-small]", "[smollm2, gpt-9]"), "routes[0]", "gpt-9"),
        (("[smollm2, vllm, mistral-small]", "[vllm, vllm]"), "routes[0]", "twice"),
        (
            ("currency: USD, when", "currency: EUR, when"),
            "routes[0].cloud_budget.currency",
            "in USD",
        ),
        (("per_day: 20.00, ", ""), "routes[0].cloud_budget", "exactly one of per_day"),
        (("policy: local-first", "policy: random"), "routes[0].policy", "local-first"),
        (("    price: {input_per_mtok: 0.20, output_per_mtok: 0.60}\n", ""), "routes[0]", "price"),
    ],
)
def test_errors_name_the_field(
    tmp_path: Path, change: tuple[str, str], field: str, why: str
) -> None:
    message = problems(tmp_path, GOOD.replace(*change))
    assert field in message and why in message, message


def test_local_fields_on_a_remote_engine_and_back(tmp_path: Path) -> None:
    text = GOOD.replace("smollm2.gguf\n", "smollm2.gguf\n    url: http://a/v1\n")
    assert "only for engine openai" in problems(tmp_path, text)
    text = GOOD.replace("    url: https:", "    source: file:///a.gguf\n    url: https:")
    assert "engine openai takes url, not source" in problems(tmp_path, text)


def test_a_route_cannot_shadow_a_model(tmp_path: Path) -> None:
    assert "already a model's" in problems(
        tmp_path, GOOD.replace("  - name: chat", "  - name: vllm")
    )


def test_local_first_needs_a_local_target(tmp_path: Path) -> None:
    text = GOOD.replace("[smollm2, vllm, mistral-small]", "[mistral-small]")
    assert "cloud: false" in problems(tmp_path, text)
