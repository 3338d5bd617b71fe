"""What the operator does for one Model, independent of kopf.

Each function takes the API client, the object as the watch delivered it, and settings, and
returns what happened (the new status and the Events worth posting); the kopf handlers in
:mod:`cloudlet.kube.operator` only call them and post the Events. Everything is idempotent:
children are written with server-side apply under one field manager, status is patched only when
it differs, and deleting what is already gone is not an error. So any event may be replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.engine import InvalidModel, children
from cloudlet.kube.names import FIELD_MANAGER_OPERATOR, MODEL_LABEL, child_name
from cloudlet.kube.resources import DEPLOYMENT, MODEL, SERVICE
from cloudlet.kube.settings import EngineSettings
from cloudlet.kube.status import model_status, ready_changed

Json = dict[str, Any]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    status: Json
    events: list[Event] = field(default_factory=list)
    #: Why the caller should try again later (a failed apply), or None.
    retry: str | None = None


async def reconcile(
    api: KubeClient, model: Mapping[str, Any], settings: EngineSettings, now: datetime
) -> Outcome:
    """Make the Model's children match it, then its status match the children."""
    meta = model["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    events: list[Event] = []
    deployment: Json | None = None
    error: tuple[str, str] | None = None
    try:
        kids = children(model, settings)
    except InvalidModel as exc:
        kids, error = None, ("InvalidSpec", str(exc))
        events.append(Event("Warning", "InvalidSpec", str(exc)))
    if kids is None and error is None:
        # A remote model runs nothing; drop pods left from when it was local.
        await _delete_children(api, namespace, name)
    elif kids is not None:
        try:
            deployment = await api.apply(kids.deployment, field_manager=FIELD_MANAGER_OPERATOR)
            await api.apply(kids.service, field_manager=FIELD_MANAGER_OPERATOR)
        except KubeApiError as exc:
            error = ("ApplyFailed", exc.message)
            events.append(Event("Warning", "ApplyFailed", exc.message))
            deployment = await api.get(DEPLOYMENT.path(namespace, child_name(name)))
        else:
            events.append(
                Event(
                    "Normal",
                    "Applied",
                    f"applied Deployment and Service {child_name(name)} "
                    f"(generation {meta.get('generation', 0)})",
                )
            )
    outcome = await _write_status(api, model, deployment, now, error)
    outcome.events[:0] = events
    if error is not None and error[0] == "ApplyFailed":
        outcome.retry = error[1]
    return outcome


async def refresh_from_deployment(
    api: KubeClient,
    deployment: Mapping[str, Any],
    settings: EngineSettings,
    now: datetime,
    *,
    deleted: bool = False,
) -> tuple[Json, Outcome] | None:
    """A child Deployment changed: recompute its Model's status (recreate it if deleted).

    Returns the Model and the outcome, or None when the Deployment has no (live) Model.
    """
    meta = deployment.get("metadata", {})
    owner = meta.get("labels", {}).get(MODEL_LABEL)
    if not owner:
        return None
    model = await api.get(MODEL.path(meta.get("namespace"), owner))
    if model is None or model["metadata"].get("deletionTimestamp"):
        return None
    if deleted:
        # Level-triggered: a child deleted by hand comes back.
        return model, await reconcile(api, model, settings, now)
    return model, await _write_status(api, model, deployment, now, None)


async def cleanup(api: KubeClient, model: Mapping[str, Any]) -> list[Event]:
    """The Model is gone: delete its children now rather than wait for the garbage collector
    (which their ownerReferences also let do it, should the operator be down)."""
    meta = model["metadata"]
    deleted = await _delete_children(api, meta["namespace"], meta["name"])
    return [Event("Normal", "Deleted", f"deleted {', '.join(deleted)}")] if deleted else []


async def _delete_children(api: KubeClient, namespace: str, name: str) -> list[str]:
    deleted = []
    for kind, label in ((DEPLOYMENT, "Deployment"), (SERVICE, "Service")):
        if await api.delete(kind.path(namespace, child_name(name))):
            deleted.append(f"{label} {child_name(name)}")
    return deleted


async def _write_status(
    api: KubeClient,
    model: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    now: datetime,
    error: tuple[str, str] | None,
) -> Outcome:
    old: Json = dict(model.get("status") or {})
    new = model_status(model, deployment, now, error=error)
    events: list[Event] = []
    if new != old:
        meta = model["metadata"]
        await api.merge_patch(
            MODEL.path(meta["namespace"], meta["name"]) + "/status", {"status": new}
        )
        flip = ready_changed(old, new)
        if flip is not None:
            ready, reason, message = flip
            events.append(Event("Normal" if ready else "Warning", reason, message))
    return Outcome(new, events)
