"""``cloudlet operator``: kopf handlers wired to :mod:`cloudlet.kube.reconcile`, nothing more.

Handlers are registered on a registry built per call (no module-level registry, so tests can run
operators side by side) and share one API client through kopf's ``memo``. kopf runs with:

- annotation-based progress and diff-base storage: the CRD's structural status schema would
  prune kopf's default ``status.kopf`` (and a real API server drops unknown status fields);
- no finalizer: children carry ownerReferences, so the garbage collector removes them even when
  the operator is down; the operator deletes them itself on the Model's DELETED event only to be
  prompt;
- peering off and cluster scanning off: one replica (``Recreate``), namespaced RBAC;
- kopf's own per-handler Events only for warnings; the reconciler posts the meaningful ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import kopf

from cloudlet.kube.client import KubeClient
from cloudlet.kube.names import GROUP, OPERATOR_NAME, PLURAL, VERSION
from cloudlet.kube.reconcile import Event, Outcome, cleanup, reconcile, refresh_from_deployment
from cloudlet.kube.settings import OperatorSettings

Connect = Callable[[], Awaitable[KubeClient]]
Login = Callable[..., kopf.ConnectionInfo | None]
ANNOTATION_PREFIX = f"operator.{GROUP}"
_MANAGED = {"app.kubernetes.io/managed-by": OPERATOR_NAME}


def default_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's service account in a cluster, else the kubeconfig."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def default_connect() -> KubeClient:
    return await KubeClient.connect()


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = OPERATOR_NAME
    settings.peering.standalone = True
    settings.scanning.disabled = True
    return settings


def build_registry(
    settings: OperatorSettings, *, login: Login = default_login, connect: Connect = default_connect
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    engine = settings.engine

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return login(**kwargs)

    @kopf.on.startup(registry=registry)
    async def _startup(memo: kopf.Memo, **_: Any) -> None:
        memo["api"] = await connect()

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
        api: KubeClient | None = memo.get("api")
        if api is not None:
            await api.close()

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=5)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=5)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=5)
    async def _reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await reconcile(memo["api"], body, engine, _now())
        _post(body, outcome.events)
        if outcome.retry is not None:
            raise kopf.TemporaryError(outcome.retry, delay=5)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def _model_event(
        event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        if event["type"] == "DELETED":
            await cleanup(memo["api"], body)

    @kopf.on.event("apps", "v1", "deployments", labels=_MANAGED, registry=registry)
    async def _deployment_event(
        event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        found = await refresh_from_deployment(
            memo["api"], body, engine, _now(), deleted=event["type"] == "DELETED"
        )
        if found is not None:
            model, outcome = found
            _post(model, outcome.events)

    return registry


def _post(body: Any, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])


def _now() -> datetime:
    return datetime.now(UTC)


def run_operator(
    settings: OperatorSettings,
    *,
    login: Login = default_login,
    connect: Connect = default_connect,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run until stopped (a signal, or ``stop_flag`` when run in a thread)."""
    kopf.run(
        registry=build_registry(settings, login=login, connect=connect),
        settings=kopf_settings(),
        memo=kopf.Memo(),
        standalone=True,
        namespaces=[settings.namespace],
        liveness_endpoint=f"http://{settings.liveness}/healthz" if settings.liveness else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


__all__ = ["Outcome", "build_registry", "kopf_settings", "run_operator"]
