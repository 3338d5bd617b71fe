"""A Model's status, computed from the Model and what its engine Deployment reports.

Pure and level-triggered: given the same Model and Deployment it returns the same status, so the
operator can recompute it on any event and patch only when it differs. Conditions follow the
Kubernetes API conventions (``Ready`` / ``Progressing`` / ``Degraded``, each with reason, message,
``observedGeneration`` and a ``lastTransitionTime`` that moves only when the status flips), so
``kubectl wait --for=condition=Ready model/x`` works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cloudlet.kube.names import HTTP_PORT, child_name, engine_selector, selector_string

Status = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def model_status(
    model: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    now: datetime,
    *,
    error: tuple[str, str] | None = None,
) -> Status:
    """The whole ``status`` for ``model``; ``error`` is (reason, message) when its children
    could not be made (``InvalidSpec``, ``ApplyFailed``)."""
    meta = model.get("metadata", {})
    spec = model.get("spec", {})
    name: str = meta.get("name", "")
    namespace: str = meta.get("namespace", "default")
    generation = int(meta.get("generation", 0))
    previous = {c.get("type"): c for c in model.get("status", {}).get("conditions", [])}
    status: Status = {"observedGeneration": generation}
    if spec.get("engine") == "remote":
        urls = [spec["url"]] if spec.get("url") else list(spec.get("urls", []))
        conditions = _remote(urls)
        status.update(replicas=0, readyReplicas=0, endpoint=urls[0] if urls else "")
    else:
        conditions = _local(spec, deployment, error)
        dstatus = (deployment or {}).get("status", {})
        status.update(
            replicas=int(dstatus.get("replicas", 0)),
            readyReplicas=int(dstatus.get("readyReplicas", 0)),
            selector=selector_string(engine_selector(name)),
            endpoint=f"http://{child_name(name)}.{namespace}.svc:{HTTP_PORT}/v1",
        )
    status["conditions"] = [_render(c, previous.get(c.type), generation, now) for c in conditions]
    return status


def _remote(urls: list[str]) -> list[Condition]:
    where = ", ".join(urls) or "(no URL)"
    return [
        Condition("Ready", True, "Remote", f"served by {where}; no pods"),
        Condition("Progressing", False, "Remote", "nothing to roll out"),
        Condition("Degraded", False, "AsExpected", "nothing to run"),
    ]


def _local(
    spec: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    error: tuple[str, str] | None,
) -> list[Condition]:
    desired = int(spec.get("replicas", 1))
    if error is not None:
        reason, message = error
        return [
            Condition("Ready", _ready_count(deployment) > 0, reason, message),
            Condition("Progressing", False, reason, message),
            Condition("Degraded", True, reason, message),
        ]
    if deployment is None:
        return [
            Condition("Ready", False, "Pending", "the engine Deployment does not exist yet"),
            Condition("Progressing", True, "Creating", "creating the engine Deployment"),
            Condition("Degraded", False, "AsExpected", "no failure seen"),
        ]
    dstatus = deployment.get("status", {})
    ready = _ready_count(deployment)
    updated = int(dstatus.get("updatedReplicas", 0))
    current = int(dstatus.get("replicas", 0))
    observed = int(dstatus.get("observedGeneration", 0)) >= int(
        deployment.get("metadata", {}).get("generation", 0)
    )
    degraded = _deployment_failure(dstatus)
    counts = f"{ready}/{desired} replicas ready"
    if desired == 0:
        ready_cond = Condition(
            "Ready", False, "ScaledToZero", "no replicas; a request scales the model up"
        )
    elif ready > 0:
        ready_cond = Condition("Ready", True, "ReplicasReady", counts)
    else:
        ready_cond = Condition("Ready", False, "NoReplicaReady", counts)
    done = observed and ready >= desired and updated >= desired and current <= desired
    progressing = (
        Condition("Progressing", False, "RolloutComplete", counts)
        if done
        else Condition("Progressing", True, "RollingOut", counts)
    )
    if degraded is not None:
        degraded_cond = Condition("Degraded", True, degraded[0], degraded[1])
        if not done:
            progressing = Condition("Progressing", False, degraded[0], degraded[1])
    else:
        degraded_cond = Condition("Degraded", False, "AsExpected", "no failure seen")
    return [ready_cond, progressing, degraded_cond]


def _ready_count(deployment: Mapping[str, Any] | None) -> int:
    return int((deployment or {}).get("status", {}).get("readyReplicas", 0))


def _deployment_failure(dstatus: Mapping[str, Any]) -> tuple[str, str] | None:
    for cond in dstatus.get("conditions", []):
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "ProgressDeadlineExceeded", cond.get("message") or "the rollout stalled"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return "ReplicaFailure", cond.get("message") or "pods cannot be created"
    return None


def _render(
    cond: Condition, previous: Mapping[str, Any] | None, generation: int, now: datetime
) -> dict[str, Any]:
    status = "True" if cond.status else "False"
    when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if previous is not None and previous.get("status") == status:
        when = previous.get("lastTransitionTime", when)
    return {
        "type": cond.type,
        "status": status,
        "reason": cond.reason,
        "message": cond.message,
        "observedGeneration": generation,
        "lastTransitionTime": when,
    }


def ready_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, str, str] | None:
    """(ready, reason, message) when the Ready condition flips between two statuses."""

    def ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
        return next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})

    before, after = ready(old), ready(new)
    if after and before.get("status") != after.get("status"):
        return after["status"] == "True", after["reason"], after["message"]
    return None
