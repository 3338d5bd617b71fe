"""Pod building blocks every cloudlet workload shares: the restricted security context, probes,
the drain lifecycle and rollout strategy.

They live in one module so that the gateway, the operator and each engine get the same answers to
the same questions (can it write to its root filesystem? when is it ready? how long may it take
to stop?), and so that the Pod Security "restricted" profile is met in one place.
"""

from __future__ import annotations

from typing import Any

from cloudlet.kube.settings import DrainSettings

Manifest = dict[str, Any]

#: The UID the Dockerfile creates; any non-root UID works, this one matches the image.
RUN_AS_USER = 10001
#: The pod's writable scratch directory (an emptyDir), not this machine's.
TMP_DIR = "/tmp"  # noqa: S108


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, *, period: int, failures: int, timeout: int = 3) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def probes(*, health: str, ready: str, startup_seconds: int) -> Manifest:
    """Startup covers model loading (``startup_seconds`` at most); liveness only restarts a pod
    that stopped answering ``health``; readiness takes it out of rotation, e.g. while draining.
    """
    period = 5
    return {
        "startupProbe": http_probe(
            health, period=period, failures=max(1, startup_seconds // period)
        ),
        "readinessProbe": http_probe(ready, period=period, failures=2),
        "livenessProbe": http_probe(health, period=10, failures=3),
    }


def drain_lifecycle(drain: DrainSettings) -> Manifest:
    """A pause before SIGTERM, so endpoints stop sending new requests before the process drains.

    ``exec sleep`` rather than the ``sleep`` action: the latter needs Kubernetes 1.30+.
    """
    return {"preStop": {"exec": {"command": ["sleep", str(drain.pre_stop_seconds)]}}}


def rolling_update() -> Manifest:
    """Add before removing: capacity never dips during a rollout."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def tmp_volume() -> tuple[Manifest, Manifest]:
    """A writable /tmp beside the read-only root filesystem: (volume, mount)."""
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "mountPath": TMP_DIR},
    )


def with_default_requests(resources: Manifest | None, defaults: dict[str, str]) -> Manifest:
    """Container resources with ``requests`` always set: the scheduler needs them."""
    out: Manifest = {key: dict(value) for key, value in (resources or {}).items() if value}
    requests = out.setdefault("requests", {})
    for key, value in defaults.items():
        requests.setdefault(key, value)
    return out
