"""Gateway discovery: ready engine endpoints per model, from EndpointSlices, through the fake API."""

from __future__ import annotations

import asyncio
from typing import Any

from cloudlet.kube.client import KubeClient
from cloudlet.kube.discovery import (
    DiscoverySettings,
    Endpoint,
    EndpointTable,
    slice_endpoints,
    watch_ready_endpoints,
)

from .fakekube import fake_kube

SLICES = "/apis/discovery.k8s.io/v1/namespaces/ai/endpointslices"


def endpoint_slice(
    name: str, model: str | None, *endpoints: tuple[str, bool | None, bool]
) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": f"model-{model}"}
    if model:
        labels["cloudlet.dev/model"] = model
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ai", "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {
                    k: v
                    for k, v in (("ready", ready), ("terminating", terminating))
                    if v is not None
                },
                "targetRef": {"kind": "Pod", "name": f"pod-{address}"},
            }
            for address, ready, terminating in endpoints
        ],
    }


def test_only_ready_not_terminating_endpoints_count() -> None:
    obj = endpoint_slice(
        "a",
        "smollm2",
        ("10.0.0.1", True, False),
        ("10.0.0.2", False, False),
        ("10.0.0.3", None, False),
        ("10.0.0.4", True, True),
    )
    model, endpoints = slice_endpoints(obj)
    assert model == "smollm2"
    assert [e.address for e in endpoints] == ["10.0.0.1", "10.0.0.3"]
    assert endpoints[0] == Endpoint("10.0.0.1", 8080, "pod-10.0.0.1")
    assert Endpoint("fd00::1", 8000).base_url == "http://[fd00::1]:8000/v1"


def test_a_model_spans_slices_and_foreign_slices_are_ignored() -> None:
    table = EndpointTable.from_items(
        [
            endpoint_slice("a", "smollm2", ("10.0.0.1", True, False)),
            endpoint_slice("b", "smollm2", ("10.0.0.2", True, False)),
            endpoint_slice("c", None, ("10.0.0.9", True, False)),
        ]
    )
    assert [e.address for e in table.by_model()["smollm2"]] == ["10.0.0.1", "10.0.0.2"]
    assert set(table.by_model()) == {"smollm2"}
    after = table.apply("DELETED", endpoint_slice("a", "smollm2"))
    assert [e.address for e in after.by_model()["smollm2"]] == ["10.0.0.2"]
    assert [e.address for e in table.by_model()["smollm2"]] == ["10.0.0.1", "10.0.0.2"]  # unchanged


async def test_watching_the_api_yields_each_change() -> None:
    async with fake_kube() as (api, url):

        async def post(body: dict[str, Any]) -> None:
            async with api.post(SLICES, json=body) as response:
                assert response.status < 300

        async def patch(name: str, body: dict[str, Any]) -> None:
            headers = {"Content-Type": "application/merge-patch+json"}
            async with api.patch(f"{SLICES}/{name}", json=body, headers=headers) as response:
                assert response.status < 300

        await post(endpoint_slice("smollm2-abc", "smollm2", ("10.0.0.1", True, False)))
        snapshots: asyncio.Queue[dict[str, tuple[Endpoint, ...]]] = asyncio.Queue()

        async def collect() -> None:
            async with await KubeClient.connect(host=url) as client:
                async for snapshot in watch_ready_endpoints(
                    client, DiscoverySettings(namespace="ai")
                ):
                    await snapshots.put(snapshot)

        task = asyncio.create_task(collect())
        try:
            first = await asyncio.wait_for(snapshots.get(), 20)
            assert {m: [e.address for e in eps] for m, eps in first.items()} == {
                "smollm2": ["10.0.0.1"]
            }

            await post(endpoint_slice("qwen-xyz", "qwen", ("10.0.1.1", False, False)))
            second = await asyncio.wait_for(snapshots.get(), 20)
            assert second["qwen"] == ()  # known, but nothing ready: a request would scale it up

            ready = endpoint_slice("qwen-xyz", "qwen", ("10.0.1.1", True, False))
            await patch("qwen-xyz", {"endpoints": ready["endpoints"]})
            third = await asyncio.wait_for(snapshots.get(), 20)
            assert [e.address for e in third["qwen"]] == ["10.0.1.1"]

            async with api.delete(f"{SLICES}/smollm2-abc") as response:
                assert response.status < 300
            fourth = await asyncio.wait_for(snapshots.get(), 20)
            assert set(fourth) == {"qwen"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        lists = [
            r
            for r in api
            if r.method == "GET" and r.params.get("labelSelector") == "cloudlet.dev/model"
        ]
        assert lists, "discovery selects the slices by the model label"
