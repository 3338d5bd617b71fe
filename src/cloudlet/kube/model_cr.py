"""One Model resource per model of the spec.

The spec speaks in cloudlet's engines (``llamacpp`` embedded, ``openai`` remote); the cluster
speaks in the Model CRD's (``llamacpp`` pods, ``vllm`` pods, ``remote`` URL). This module maps
one onto the other. A model whose engine this version does not know is left out with a warning
rather than failing the whole render: the gateway still serves it from the spec in its ConfigMap.
Secrets are referenced by name (``${VAR}`` in the spec → a key of the cloudlet Secret), never
copied into a manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from cloudlet.kube.names import API_VERSION, KIND, labels
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]

_VAR_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ANY_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Spec engine → Model engine. ``openai`` is any OpenAI-compatible server, so ``remote``.
ENGINE_MAP: Mapping[str, str] = {"llamacpp": "llamacpp", "vllm": "vllm", "openai": "remote"}
#: Spec fields that are not engine options: mapped to Model fields, or used by the gateway only
#: (which reads them from the spec in its ConfigMap). A card's files are not in an engine pod.
_NOT_OPTIONS = frozenset(
    {
        *("name", "engine", "source", "url", "urls", "api_key", "upstream_model", "headers"),
        *("timeouts", "price", "cloud", "balance", "health_check", "breaker", "card"),
        "accelerator",
    }
)
#: vLLM takes no cloudlet options; these spec fields become its flags instead.
_VLLM_FLAGS: Mapping[str, str] = {"context": "--max-model-len", "parallel": "--max-num-seqs"}


def secret_var(value: object) -> str | None:
    """``${VAR}`` → ``VAR``; anything else → None."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    match = _VAR_REF.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else None


def referenced_vars(data: object) -> set[str]:
    """Every ``${VAR}`` named anywhere in a dumped spec: each becomes a Secret reference."""
    if isinstance(data, str):
        return set(_ANY_VAR_REF.findall(data))
    if isinstance(data, Mapping):
        return set().union(*(referenced_vars(v) for v in data.values()))
    if isinstance(data, list | tuple):
        return set().union(*(referenced_vars(v) for v in data))
    return set()


def model_resource(
    model: BaseModel, name: str, settings: RenderSettings
) -> tuple[Manifest | None, list[str]]:
    """The Model for one spec model (or None) and warnings about it.

    A literal (non-``${VAR}``) API key gets no Secret reference here; the render refuses it when
    it dumps the spec (:func:`cloudlet.kube.gateway.cluster_spec`).
    """
    spec_engine = str(getattr(model, "engine", "llamacpp"))
    engine = ENGINE_MAP.get(spec_engine)
    model_id = str(getattr(model, "name", name))
    if engine is None:
        return None, [f"model {model_id!r}: engine {spec_engine!r} has no Kubernetes form yet"]
    spec: dict[str, Any] = {"modelName": model_id, "engine": engine}
    warnings: list[str] = []
    if engine == "remote":
        spec.update(_remote_fields(model, settings))
    else:
        source = str(getattr(model, "source", ""))
        spec["source"] = source
        if source.startswith("file://"):
            warnings.append(
                f"model {model_id!r}: {source} must exist inside the engine pod "
                "(set spec.modelVolume on the Model to mount a volume holding it)"
            )
        spec.update(_replica_fields(settings))
        accelerator = getattr(model, "accelerator", None)
        if accelerator is not None:
            spec["accelerator"] = accelerator.model_dump(mode="json")
        elif engine == "vllm":
            spec["accelerator"] = {"resource": "nvidia.com/gpu", "count": 1}
    options = _options(model) if engine != "remote" else {}
    if engine == "vllm":
        args = [
            part
            for field, flag in _VLLM_FLAGS.items()
            if field in options
            for part in (flag, str(options[field]))
        ]
        if args:
            spec["args"] = args
    elif options:
        spec["options"] = options
    manifest: Manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels("model", name),
        },
        "spec": spec,
    }
    return manifest, warnings


def _remote_fields(model: BaseModel, settings: RenderSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    urls = [str(u) for u in getattr(model, "urls", None) or ()]
    url = getattr(model, "url", None)
    if url:
        out["url"] = str(url)
    if urls:
        out["urls"] = urls
    var = secret_var(getattr(model, "api_key", None))
    if var is not None:
        out["apiKeySecretRef"] = {"name": settings.secret_name, "key": var}
    return out


def _replica_fields(settings: RenderSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "minReplicas": settings.min_replicas,
        "maxReplicas": settings.max_replicas,
        "autoscaling": {"targetQueueDepth": settings.target_queue_depth},
        "drain": {
            "preStopSeconds": settings.drain.pre_stop_seconds,
            "maxStreamSeconds": settings.drain.max_stream_seconds,
        },
    }
    if settings.min_replicas == settings.max_replicas:
        # Only a fixed size is written: an autoscaled Model's replicas belong to the autoscaler,
        # and a re-apply must not take them back (the CRD defaults them to 1).
        out["replicas"] = settings.min_replicas
    return out


def _options(model: BaseModel) -> dict[str, Any]:
    """The remaining spec fields, as JSON, without defaults and without secrets."""
    dumped = model.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    return {key: value for key, value in dumped.items() if key not in _NOT_OPTIONS}
