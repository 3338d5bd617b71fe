"""A small JSON-in, JSON-out view of the Kubernetes API.

``kubernetes_asyncio`` does what is hard to get right (kubeconfig contexts, exec credential
plugins, in-cluster service-account tokens, TLS); its generated typed models are not needed for
the handful of calls cloudlet makes, and plain dicts are what the pure render / status functions
take. So this wraps its ``ApiClient.call_api`` with raw responses: server-side apply, merge patch,
get, list, delete and watch. Errors become :class:`KubeApiError` (``raise ... from``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from cloudlet.errors import CloudletError
from cloudlet.kube.resources import object_path

Json = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(CloudletError):
    """The Kubernetes API refused a request (or could not be reached: ``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"Kubernetes API: {status} {reason}: {message}")
        self.status_code = status
        self.reason = reason


class KubeClient:
    """One connection to one API server; use as an async context manager."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @classmethod
    async def connect(
        cls,
        *,
        host: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
    ) -> KubeClient:
        """``host`` for an unauthenticated test server; else in-cluster or a kubeconfig
        (``in_cluster=None`` picks in-cluster when running in a pod)."""
        cfg = k8s_client.Configuration()
        if host is not None:
            cfg.host = host
        elif in_cluster or (in_cluster is None and "KUBERNETES_SERVICE_HOST" in os.environ):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            try:
                await k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=cfg
                )
            except (k8s_config.ConfigException, OSError) as exc:
                raise KubeApiError(0, "NoConfig", f"no usable kubeconfig: {exc}") from exc
        return cls(k8s_client.ApiClient(cfg))

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: float | None = 60,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=request_timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeApiError(0, "Unreachable", str(exc) or type(exc).__name__) from exc
        if response.status >= 400:
            text = await response.text()
            response.release()
            try:
                payload = json.loads(text)
                reason, message = payload.get("reason", ""), payload.get("message", text)
            except ValueError:
                reason, message = response.reason or "", text
            raise KubeApiError(response.status, str(reason), str(message))
        return response

    async def request(self, method: str, path: str, **kwargs: Any) -> Json:
        response = await self._send(method, path, **kwargs)
        async with response:
            data: Json = await response.json(content_type=None)
        return data

    async def get(self, path: str) -> Json | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeApiError as exc:
            if exc.status_code == 404:
                return None
            raise

    async def list(self, path: str, *, label_selector: str | None = None) -> Json:
        query = {"labelSelector": label_selector} if label_selector else None
        return await self.request("GET", path, query=query)

    async def apply(
        self, manifest: Mapping[str, Any], *, field_manager: str, dry_run: bool = False
    ) -> Json:
        """Server-side apply, taking over fields from other managers (the operator's intent
        wins over hand edits of the objects it owns). ``dry_run``: validated, not stored."""
        query = {"fieldManager": field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return await self.request(
            "PATCH",
            object_path(manifest),
            query=query,
            body=dict(manifest),
            content_type=APPLY_PATCH,
        )

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Json:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def delete(self, path: str) -> bool:
        """Delete in the background (dependents go to the garbage collector); False if absent."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", path, body=body)
        except KubeApiError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[Json]:
        """Watch events (``{"type": ..., "object": ...}``) until the server ends the stream."""
        query = {"watch": "true", "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            query["resourceVersion"] = resource_version
            query["allowWatchBookmarks"] = "true"
        if label_selector:
            query["labelSelector"] = label_selector
        response = await self._send("GET", path, query=query, request_timeout=None)
        buffer = b""
        async with response:
            try:
                # Split lines by hand: aiohttp's line iterator refuses lines over 128 KiB.
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
            except aiohttp.ClientError as exc:
                raise KubeApiError(0, "WatchBroken", str(exc)) from exc
