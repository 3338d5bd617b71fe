"""``cloudlet deploy --render``: the spec a user runs on a laptop, as plain manifests.

A pure function from (spec, settings) to a list of manifest dicts, in apply order: the CRD, the
operator, the gateway (with its ServiceMonitor and Grafana dashboard when asked), one Model per
model, then the autoscalers. Every problem the cluster would have with the spec (two models
with one Kubernetes name, a literal secret) is raised as a :class:`~cloudlet.errors.SpecError`
before anything is returned, so nothing half-rendered is ever printed; things worth knowing but
not fatal come back as warnings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import yaml

from cloudlet.config import Spec
from cloudlet.errors import SpecError
from cloudlet.kube.autoscale import gateway_hpa, model_autoscaler
from cloudlet.kube.crd import model_crd
from cloudlet.kube.gateway import cluster_spec, gateway_manifests
from cloudlet.kube.model_cr import model_resource
from cloudlet.kube.monitoring import monitoring_manifests
from cloudlet.kube.names import kube_names
from cloudlet.kube.operator_manifests import operator_manifests
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    manifests: tuple[Manifest, ...]
    warnings: tuple[str, ...]

    def yaml(self) -> str:
        return to_yaml(self.manifests)


def render(spec: Spec, settings: RenderSettings, *, source: str = "the spec") -> Rendered:
    """All manifests for ``spec``; raises SpecError naming every problem at once."""
    problems: list[tuple[str, str]] = []
    try:
        names = kube_names((m.name for m in spec.models), source)
    except SpecError as exc:
        problems += exc.problems
        names = {}
    spec_data, secret_problems = cluster_spec(spec)
    problems += secret_problems
    if problems:
        raise SpecError(source, problems)

    settings = _with_spec_drain(spec, settings)
    warnings: list[str] = []
    settings, note = _gateway_replicas(spec, settings)
    if note:
        warnings.append(note)
    models: list[Manifest] = []
    for model in spec.models:
        manifest, notes = model_resource(model, names[model.name], settings)
        warnings += notes
        mof_file = getattr(getattr(model, "card", None), "mof_file", None)
        if mof_file is not None:
            warnings.append(
                f"model {model.name!r}: card.mof_file {mof_file} must exist in the gateway pod"
            )
        if manifest is not None:
            models.append(manifest)
    autoscalers: list[Manifest] = []
    for manifest in models:
        autoscaler, note = model_autoscaler(manifest, settings)
        if autoscaler is not None:
            autoscalers.append(autoscaler)
        if note:
            warnings.append(note)

    manifests: list[Manifest] = [model_crd()]
    if settings.operator:
        manifests += operator_manifests(settings)
    manifests += gateway_manifests(spec_data, settings)
    manifests.append(gateway_hpa(settings))
    if settings.monitoring:
        manifests += monitoring_manifests(settings, getattr(spec, "currency", "USD"))
    manifests += models
    manifests += autoscalers
    return Rendered(tuple(manifests), tuple(warnings))


def _gateway_replicas(spec: Spec, settings: RenderSettings) -> tuple[RenderSettings, str | None]:
    """Gateway replicas share keys, limits and the ledger only through PostgreSQL and Redis;
    with SQLite or in-memory counters each would keep its own (N replicas, N times a budget), so
    the gateway then runs exactly one replica, and the render says why."""
    storage = getattr(spec, "storage", None)  # rendering takes any pydantic spec
    if storage is None or storage.ledger == "off":
        return settings, None
    shared = (storage.ledger or "").startswith("postgres") and storage.counters.startswith("redis")
    if shared:
        return settings, None
    one = replace(settings, gateway_replicas=1, gateway_max_replicas=1)
    return one, (
        "storage: the gateway runs one replica, because its ledger (SQLite, in the pod's "
        "emptyDir: lost when the pod goes) or its counters (memory) cannot be shared; set "
        "storage.ledger: postgresql://... and storage.counters: redis://... (passwords as "
        "${VAR}) to run several"
    )


def _with_spec_drain(spec: Spec, settings: RenderSettings) -> RenderSettings:
    """The spec says how long a draining server lets requests finish; the pods' grace periods
    must cover exactly that (plus the preStop pause), or Kubernetes cuts what the server waits
    for."""
    drain_s = getattr(spec.server, "drain_timeout_s", None)
    if drain_s is None:
        return settings
    seconds = max(1, math.ceil(drain_s))
    return replace(settings, drain=replace(settings.drain, max_stream_seconds=seconds))


def to_yaml(manifests: Iterable[Manifest]) -> str:
    """Multi-document YAML, one ``---`` per object, keys in the order they were built; multi-line
    strings (the spec in the ConfigMap) as literal blocks, so they read as they were written.
    """
    dumper = _block_dumper()
    return "".join(
        "---\n" + yaml.dump(m, Dumper=dumper, sort_keys=False, default_flow_style=False)
        for m in manifests
    )


def _block_dumper() -> type[yaml.SafeDumper]:
    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper
