"""`cloudlet deploy`: --render prints manifests, --apply applies them; a bad spec prints nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cloudlet.cli.deploy import deploy
from cloudlet.config import load_spec
from cloudlet.kube.apply import apply_manifests
from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.render import render
from cloudlet.kube.settings import RenderSettings

from .fakekube import fake_kube

runner = CliRunner()


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command()(deploy)
    cli.command("noop")(lambda: None)  # two commands, so `deploy` is addressed by name
    return cli


def test_render_prints_multi_document_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app(), ["deploy", "--render", "--namespace", "ai", "--autoscaler", "keda"]
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs[0]["kind"] == "CustomResourceDefinition"
    assert {d["metadata"].get("namespace") for d in docs[1:]} == {"ai"}
    assert "ScaledObject" in {d["kind"] for d in docs}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("server:\n  port: high\n", "server.port"),
        (
            "models:\n  - {name: a.b, source: package://p/x.gguf}\n  - {name: a_b, source: package://p/x.gguf}\n",
            "models[1].name",
        ),
    ],
)
def test_a_bad_spec_fails_before_anything_is_printed(tmp_path: Path, text: str, field: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    result = runner.invoke(app(), ["deploy", "--render", "--config", str(spec)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "invalid spec in" in result.stderr
    assert field in result.stderr
    assert "Traceback" not in result.output


def test_exactly_one_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app(), ["deploy"]).exit_code == 2
    assert runner.invoke(app(), ["deploy", "--render", "--apply"]).exit_code == 2


async def test_apply_converges_under_one_field_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with fake_kube() as (api, url):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": url}}],
                    "users": [{"name": "me", "user": {"token": "t"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                    "current-context": "fake",
                }
            )
        )
        args = ["deploy", "--apply", "-n", "ai", "--kubeconfig", str(kubeconfig)]
        first = await asyncio.to_thread(runner.invoke, app(), args)
        assert first.exit_code == 0, first.output
        assert "customresourcedefinition/models.cloudlet.dev serverside-applied" in first.stdout
        assert "model/smollm2 serverside-applied" in first.stdout
        count = len(api.all("apps", "v1", "deployments"))
        second = await asyncio.to_thread(runner.invoke, app(), args)
        assert second.exit_code == 0, second.output
        assert len(api.all("apps", "v1", "deployments")) == count == 2
        patches = [r for r in api if r.method == "PATCH"]
        assert patches and {r.params.get("fieldManager") for r in patches} == {"cloudlet-deploy"}
        assert (
            api.stored("cloudlet.dev", "v1alpha1", "models", "ai", "smollm2")["spec"]["engine"]
            == "llamacpp"
        )


async def test_apply_stops_at_an_api_error() -> None:
    rendered = render(load_spec(None, environ={}), RenderSettings(namespace="ai"))
    async with fake_kube() as (api, url), await KubeClient.connect(host=url) as client:
        first = [name async for name in apply_manifests(client, rendered.manifests)]
        assert first[0] == "customresourcedefinition/models.cloudlet.dev"
        assert "model/smollm2" in first
        api["patch", "/apis/cloudlet.dev/v1alpha1/namespaces/ai/models/smollm2"] << 403
        applied: list[str] = []

        async def again() -> None:
            async for name in apply_manifests(client, rendered.manifests):
                applied.append(name)

        with pytest.raises(KubeApiError) as err:
            await again()
        assert err.value.status_code == 403
        assert applied[0] == "customresourcedefinition/models.cloudlet.dev"
        assert "model/smollm2" not in applied


class _SlowCrdApi:
    """A stand-in client whose CRD becomes Established on the third look."""

    def __init__(self) -> None:
        self.looks = 0
        self.applied: list[str] = []

    async def apply(self, manifest: dict[str, Any], *, field_manager: str) -> dict[str, Any]:
        self.applied.append(manifest["kind"])
        return {"metadata": manifest["metadata"]}

    async def get(self, path: str) -> dict[str, Any]:
        self.looks += 1
        conditions = [{"type": "Established", "status": "True"}] if self.looks >= 3 else []
        return {"status": {"conditions": conditions}}


async def test_models_wait_until_the_crd_is_established() -> None:
    rendered = render(load_spec(None, environ={}), RenderSettings())
    api = _SlowCrdApi()
    seen = [name async for name in apply_manifests(api, rendered.manifests, poll=0)]  # type: ignore[arg-type]
    assert api.looks == 3
    assert api.applied.index("Model") > api.applied.index("CustomResourceDefinition")
    assert len(seen) == len(rendered.manifests)
