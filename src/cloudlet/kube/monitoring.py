"""``cloudlet deploy --render --monitoring``: a ServiceMonitor and a Grafana dashboard.

For clusters that run the Prometheus Operator (kube-prometheus-stack and friends): the
ServiceMonitor has Prometheus scrape the gateway's ``/metrics`` through its Service; the
dashboard is a ConfigMap labelled ``grafana_dashboard: "1"``, which Grafana's dashboard
sidecar picks up. The dashboard's queries use the metric names the gateway exposes
(docs/observability.md): requests, latency histograms (time to first token, time per output
token, end to end, queue time), tokens, cost local vs cloud and the cloud-equivalent, spills,
cloud budgets, and the engines' queue gauges.

A Prometheus installed by Helm often selects ServiceMonitors by its release label
(``serviceMonitorSelector``); add that label to the rendered ServiceMonitor, or let it select
all of them (``serviceMonitorSelectorNilUsesHelmValues: false``).
"""

from __future__ import annotations

import json
from typing import Any

from cloudlet.kube.names import GATEWAY_NAME, labels, selector
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]

DASHBOARD_CONFIGMAP = "cloudlet-grafana-dashboard"
DASHBOARD_UID = "cloudlet-gateway"
DASHBOARD_FILE = "cloudlet.json"
_RATE = "$__rate_interval"
_SEL = 'namespace="$namespace"'


def monitoring_manifests(settings: RenderSettings, currency: str = "USD") -> list[Manifest]:
    return [service_monitor(settings), grafana_dashboard_configmap(settings, currency)]


def service_monitor(settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": GATEWAY_NAME,
            "namespace": settings.namespace,
            "labels": labels("gateway", GATEWAY_NAME),
        },
        "spec": {
            "selector": {"matchLabels": selector("gateway", GATEWAY_NAME)},
            "namespaceSelector": {"matchNames": [settings.namespace]},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
            ],
        },
    }


def grafana_dashboard_configmap(settings: RenderSettings, currency: str = "USD") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": DASHBOARD_CONFIGMAP,
            "namespace": settings.namespace,
            "labels": {**labels("gateway", GATEWAY_NAME), "grafana_dashboard": "1"},
            "annotations": {"grafana_folder": "cloudlet"},
        },
        "data": {DASHBOARD_FILE: json.dumps(dashboard(currency), indent=1)},
    }


def dashboard(currency: str = "USD") -> dict[str, Any]:
    """The Grafana dashboard (JSON model, schema 39): one row per question. Money is in the
    deployment's ``currency`` (Grafana's unit for it where it has one)."""
    money = f"currency{currency}" if currency in _GRAFANA_CURRENCIES else "short"
    panels: list[dict[str, Any]] = []
    y = 0
    for title, row in _rows(money):
        panels.append(
            {"type": "row", "title": title, "collapsed": False, "gridPos": _pos(0, y, 24, 1)}
        )
        y += 1
        for i, panel in enumerate(row):
            width = 24 // len(row)
            panel["gridPos"] = _pos(i * width, y, width, 8)
            panels.append(panel)
        y += 8
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": DASHBOARD_UID,
        "title": "cloudlet gateway",
        "description": "Requests, latency, tokens, cost local vs cloud, spills and budgets.",
        "tags": ["cloudlet", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def _variables() -> list[dict[str, Any]]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
        {
            "name": "namespace",
            "label": "Namespace",
            "type": "query",
            "datasource": ds,
            "query": {"query": "label_values(cloudlet_in_flight_requests, namespace)"},
            "refresh": 2,
        },
        {
            "name": "model",
            "label": "Model",
            "type": "query",
            "datasource": ds,
            "query": {"query": f"label_values(cloudlet_requests_total{{{_SEL}}}, model)"},
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
        },
    ]


def _pos(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def _panel(
    title: str, unit: str, *targets: tuple[str, str], kind: str = "timeseries"
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _quantile(q: float, metric: str) -> tuple[str, str]:
    expr = (
        f"histogram_quantile({q}, sum by (le, model) "
        f'(rate({metric}_bucket{{{_SEL}, model=~"$model"}}[{_RATE}])))'
    )
    return expr, f"{{{{model}}}} p{int(q * 100)}"


_MODEL = f'{_SEL}, model=~"$model"'
#: Currencies Grafana has a unit for.
_GRAFANA_CURRENCIES = frozenset(
    ("USD", "GBP", "EUR", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "INR", "BRL", "ZAR")
)


def _rate(metric: str, by: str, selector: str = _MODEL) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{_RATE}]))"


def _increase(metric: str, selector: str) -> str:
    return f"increase({metric}{{{selector}}}[$__range])"


def _rows(money: str) -> list[tuple[str, list[dict[str, Any]]]]:
    local = f'{_SEL}, location="local"'
    # The local targets' cloud-equivalent minus what they cost (as `cloudlet usage` says).
    saved = (
        f"sum by (currency) ({_increase('cloudlet_cloud_equivalent_cost_total', _SEL)}"
        f" and on (target, currency) cloudlet_cost_total{{{local}}})"
        f" - sum by (currency) ({_increase('cloudlet_cost_total', local)})"
    )
    # Spills are counted by route, requests by what was asked for (a route's name).
    requests_by_route = (
        f'label_replace(rate(cloudlet_requests_total{{{_SEL}}}[{_RATE}]), "route", "$1", '
        '"model", "(.*)")'
    )
    spill_share = (
        f"{_rate('cloudlet_spilled_requests_total', 'route', _SEL)}"
        f" / on (route) sum by (route) ({requests_by_route})"
    )
    return [
        (
            "Traffic",
            [
                _panel(
                    "Requests per second by status",
                    "reqps",
                    (_rate("cloudlet_requests_total", "model, status"), "{{model}} {{status}}"),
                ),
                _panel(
                    "Tokens per second",
                    "short",
                    (_rate("cloudlet_generation_tokens_total", "model"), "{{model}} generated"),
                    (_rate("cloudlet_prompt_tokens_total", "model"), "{{model}} prompt"),
                ),
                _panel(
                    "Queue depth and running requests",
                    "short",
                    (f"sum by (model) (cloudlet_queue_depth{{{_MODEL}}})", "{{model}} waiting"),
                    (
                        f"sum by (model) (cloudlet_running_requests{{{_MODEL}}})",
                        "{{model}} running",
                    ),
                ),
            ],
        ),
        (
            "Latency",
            [
                _panel(
                    "Time to first token",
                    "s",
                    _quantile(0.5, "cloudlet_time_to_first_token_seconds"),
                    _quantile(0.95, "cloudlet_time_to_first_token_seconds"),
                ),
                _panel(
                    "Time per output token",
                    "s",
                    _quantile(0.5, "cloudlet_time_per_output_token_seconds"),
                    _quantile(0.95, "cloudlet_time_per_output_token_seconds"),
                ),
                _panel(
                    "End to end (p95), queue time (p95) and the wait a new request faces",
                    "s",
                    _quantile(0.95, "cloudlet_request_duration_seconds"),
                    (
                        _quantile(0.95, "cloudlet_request_queue_time_seconds")[0],
                        "{{model}} queue time p95",
                    ),
                    (
                        f"max by (model) (cloudlet_estimated_queue_wait_seconds{{{_MODEL}}})",
                        "{{model}} queue wait",
                    ),
                ),
            ],
        ),
        (
            "Cost and spill",
            [
                _panel(
                    "Cost per hour, local vs cloud",
                    money,
                    (
                        f"{_rate('cloudlet_cost_total', 'location, currency', _SEL)} * 3600",
                        "{{location}} ({{currency}})",
                    ),
                    (
                        f"{_rate('cloudlet_cloud_equivalent_cost_total', 'currency', _SEL)} * 3600",
                        "cloud-equivalent ({{currency}})",
                    ),
                ),
                _panel("Saved by running locally", money, (saved, "{{currency}}"), kind="stat"),
                _panel("Share of requests that spilled", "percentunit", (spill_share, "{{route}}")),
                _panel(
                    "Cloud budget remaining",
                    money,
                    (
                        f"sum by (route, currency) (cloudlet_cloud_budget_remaining{{{_SEL}}})",
                        "{{route}} ({{currency}})",
                    ),
                ),
            ],
        ),
    ]
