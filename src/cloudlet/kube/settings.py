"""Grouped, typed settings for rendering and for the operator, passed explicitly.

Nothing in ``cloudlet.kube`` reads the environment or a global: the CLI builds these from its
flags and hands them down, so every function's output depends on its arguments alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cloudlet import __version__

DEFAULT_IMAGE = f"cloudlet:{__version__}"
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"

Autoscaler = Literal["hpa", "keda"]


@dataclass(frozen=True)
class DrainSettings:
    """How long a pod may take to go away without cutting a stream.

    ``pre_stop_seconds`` lets Services and the gateway stop sending to a pod before it is told to
    stop; ``max_stream_seconds`` is the longest stream allowed to finish after that. The pod's
    ``terminationGracePeriodSeconds`` is their sum, so no stream is killed mid-way.
    """

    pre_stop_seconds: int = 5
    max_stream_seconds: int = 300

    @property
    def grace_period_seconds(self) -> int:
        return self.pre_stop_seconds + self.max_stream_seconds


@dataclass(frozen=True)
class EngineSettings:
    """What the operator needs to turn a Model into pods (defaults a Model can override)."""

    image: str = DEFAULT_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    image_pull_policy: str = "IfNotPresent"
    drain: DrainSettings = field(default_factory=DrainSettings)
    #: Secret whose ``CLOUDLET_WORKER_TOKEN`` key the engine pods and the gateway share.
    secret_name: str = "cloudlet-secrets"  # noqa: S105 - a Secret's name


@dataclass(frozen=True)
class RenderSettings:
    """Everything ``cloudlet deploy --render`` decides beyond the spec itself."""

    namespace: str = "default"
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    autoscaler: Autoscaler = "hpa"
    #: Secret holding the ``${VAR}`` values the spec references (one key per variable).
    secret_name: str = "cloudlet-secrets"  # noqa: S105 - a Secret's name
    gateway_replicas: int = 2
    gateway_max_replicas: int = 10
    #: Replica bounds of every locally served model (the spec does not say them yet).
    min_replicas: int = 1
    max_replicas: int = 3
    target_queue_depth: int = 4
    prometheus_url: str = DEFAULT_PROMETHEUS
    drain: DrainSettings = field(default_factory=DrainSettings)
    #: Whether to render the operator's own ServiceAccount, RBAC and Deployment.
    operator: bool = True
    #: Whether to render a ServiceMonitor and a Grafana dashboard (kube/monitoring.py).
    monitoring: bool = False


@dataclass(frozen=True)
class OperatorSettings:
    """How ``cloudlet operator`` runs: which namespace it watches and what it creates there."""

    namespace: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    #: ``host:port`` of kopf's liveness endpoint (``/healthz``), or None for none.
    liveness: str | None = None
