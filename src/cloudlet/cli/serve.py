"""`cloudlet serve`: the OpenAI-compatible server."""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated

import typer
import uvicorn
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from cloudlet import __version__
from cloudlet.api.drain import DrainState
from cloudlet.cli.common import (
    EXIT_BAD_SPEC,
    EXIT_CANNOT_LISTEN,
    EXIT_POLICY,
    ConfigOption,
    console,
    fail,
    setup_logging,
    spec_or_exit,
)
from cloudlet.cli.preflight import preflight
from cloudlet.cli.server import DrainingServer
from cloudlet.config import Spec
from cloudlet.config.remote import missing_env
from cloudlet.engines.base import Engine
from cloudlet.engines.sources import resolve_source
from cloudlet.errors import CloudletError, ModelNotPermitted, SpecError
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.pipeline import Pipeline

log = logging.getLogger("cloudlet.serve")

#: Net allocations of container objects between two young-generation collections, once the
#: server runs (Python's default is 700: see _BannerServer.startup).
GC_YOUNG_THRESHOLD = 10_000


def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: 127.0.0.1, loopback only]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8080]")] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error [default: info]")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text (for a person) or json (one object per line) [default: text]",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="One line per request on the cloudlet.access logger [default: on]",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run as the gateway inside Kubernetes: local models are served by their "
            "engine pods (found from EndpointSlices) and scaled up from zero on demand. "
            "`cloudlet deploy` sets this.",
        ),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(envvar="POD_NAMESPACE", help="With --cluster: the models' namespace"),
    ] = None,
    wake_timeout: Annotated[
        float,
        typer.Option(
            min=1, help="With --cluster: seconds a request waits for a model to scale from zero"
        ),
    ] = 120.0,
) -> None:
    """Serve the spec's models behind an OpenAI-compatible API.

    Exit codes: 1 other failures; 2 bad spec, or an unset ${VAR} in a storage URL;
    3 the openness policy refuses a model; 4 the ledger's database cannot be reached;
    5 reachable from the network (--host not loopback) with no way to authenticate (set
    CLOUDLET_ADMIN_KEY or create a key with `cloudlet keys create`); 6 the port is taken.
    """
    spec = spec_or_exit(
        config,
        {
            "server.host": host,
            "server.port": port,
            "server.log_level": log_level,
            "server.log_format": log_format,
            "server.access_log": access_log,
        },
    )
    for model in spec.models:
        for field, name in missing_env(model.api_key, model.headers, os.environ):
            fail(
                f"model {model.name!r}: {field} refers to ${{{name}}}, which is not set in the "
                "environment",
                EXIT_BAD_SPEC,
            )
        if cluster or model.engine != "llamacpp" or not model.source:
            continue
        try:
            resolve_source(model.source)
        except CloudletError as exc:
            fail(f"model {model.name!r}: {exc.message}", EXIT_BAD_SPEC)
    setup_logging(spec.server.log_level, spec.server.engine_log_level, spec.server.log_format)
    catalog = _checked_catalog(spec)
    admin_key = os.environ.get("CLOUDLET_ADMIN_KEY") or None
    listener = _listen(spec.server.host, spec.server.port)  # before loading anything
    preflight(spec, admin_key)  # storage reachable, ${VAR}s set, auth fails closed (exit 2/4/5)

    from cloudlet.api import create_app
    from cloudlet.api.http_guard import uvicorn_options

    engines, companions = _cluster_parts(spec, namespace, wake_timeout) if cluster else (None, [])
    app = create_app(
        spec,
        engines,
        catalog=catalog,
        admin_key=admin_key,
        companions=companions,
    )
    server = _BannerServer(
        uvicorn.Config(
            app,
            host=spec.server.host,
            port=spec.server.port,
            log_config=None,
            log_level=spec.server.log_level,
            # Requests are logged by cloudlet's own access log (one line per record, without
            # Rich's formatting, which costs more than the request); uvicorn's would repeat it.
            access_log=False,
            timeout_graceful_shutdown=5,
            **uvicorn_options(spec.server),
        ),
        spec,
        app.state.drain,
        catalog,
        app.state.pipeline,
        tracing=app.state.observe.describe_tracing(),
        cluster_line=(
            f"cluster: local models run on their engine pods in namespace {namespace!r}; "
            f"a model at zero replicas is scaled up, requests wait up to {wake_timeout:.0f}s"
            if cluster
            else None
        ),
    )
    try:
        server.run(sockets=[listener])
    except SystemExit:  # uvicorn's exit 3 (app start failed) is our policy code
        raise typer.Exit(1) from None
    if not server.started:
        raise typer.Exit(1)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a taken port is one line and its own exit code."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(another server there? choose one with --port)",
            EXIT_CANNOT_LISTEN,
        )
    return sock


def _cluster_parts(
    spec: Spec, namespace: str | None, wake_timeout: float
) -> tuple[dict[str, Engine], list[Callable[[], AbstractAsyncContextManager[None]]]]:
    """Engines over engine pods, and the link that keeps their pods current."""
    try:
        from cloudlet.kube.client import KubeClient
        from cloudlet.kube.cluster import ClusterLink, cluster_engines
    except ImportError as exc:  # the `kube` extra is not installed
        fail(f"--cluster needs cloudlet's kube extra (pip install 'cloudlet[kube]'): {exc}", 1)
    if not namespace:
        fail("--cluster needs --namespace (or POD_NAMESPACE, as rendered manifests set it)", 2)
    try:
        engines = cluster_engines(spec, wake_timeout_s=wake_timeout)
        link = ClusterLink(engines, namespace, KubeClient.connect)
    except SpecError as exc:
        fail(exc.message, EXIT_BAD_SPEC)
    return engines, [link.running]


def _checked_catalog(spec: Spec) -> Catalog:
    """Build the models' transparency cards and apply the openness policy before serving."""
    try:
        with console(stderr=True).status("reading model cards…"):
            catalog = Catalog.from_spec(spec)
        warnings = catalog.check_all()
    except ModelNotPermitted as exc:
        fail(f"{exc.message} (policy.openness.on_violation: refuse)", EXIT_POLICY)
    except SpecError as exc:
        fail(exc.message, EXIT_BAD_SPEC)
    for warning in warnings:
        log.warning("policy: %s", warning.message)
    return catalog


class _BannerServer(DrainingServer):
    """The draining server, plus the banner once the socket is bound (so port 0 shows the
    real port)."""

    def __init__(
        self,
        config: uvicorn.Config,
        spec: Spec,
        drain: DrainState,
        catalog: Catalog,
        pipeline: Pipeline,
        *,
        tracing: str | None = None,
        cluster_line: str | None = None,
    ) -> None:
        super().__init__(config, drain, spec.server.drain_timeout_s)
        self._tracing = tracing
        self._cluster_line = cluster_line
        self._spec = spec
        self._catalog = catalog
        self._pipeline = pipeline

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            bound = self.servers[0].sockets[0].getsockname()
            tenancy = self._pipeline.tenancy
            auth = await tenancy.describe() if tenancy is not None else "open"
            if self._pipeline.accounting is None:
                auth += " [yellow](storage.ledger: off: no API keys, limits or ledger)[/]"
            console().print(
                banner(
                    self._spec,
                    bound[0],
                    bound[1],
                    self._catalog,
                    auth,
                    self._cluster_line,
                    tracing=self._tracing,
                )
            )
            # What start-up built (modules, app, schemas) lives as long as the server: move it
            # out of the collector's sight, so each full collection walks only request garbage.
            gc.collect()
            gc.freeze()
            # A young-generation collection walks the requests in flight: at the default
            # threshold (700 allocations) one ran every 3-4 requests under load, about 100 us
            # of CPU per request with its older-generation follow-ups. Requests leave no
            # cyclic garbage behind (what they hold is freed by reference counting), so
            # collections can be rare: 10 000 took it to under 10 us (benchmarks.md).
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def banner(
    spec: Spec,
    host: str,
    port: int,
    catalog: Catalog,
    auth: str,
    cluster: str | None = None,
    *,
    tracing: str | None = None,
) -> Panel:
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("model", "kind", "engine", "context", "openness", "licence", "source"):
        table.add_column(column)
    for m in spec.models:
        summary = catalog.summary(m.name) or {}
        table.add_row(
            m.name,
            m.kind,
            m.engine,
            str(m.context),
            str(summary.get("mof_label", "")),
            str(summary.get("license") or "?"),
            _short(m.source or getattr(m, "url", None) or ""),
        )
    exposure = (
        "[green]loopback only[/]"
        if spec.server.is_loopback
        else "[yellow]reachable from the network[/]"
    )
    lines = [
        f"[bold]cloudlet {__version__}[/] listening on [bold cyan]{base}/v1[/] ({exposure})",
        f"try: curl {base}/v1/chat/completions -H 'Content-Type: application/json' "
        f'-d \'{{"model": "{spec.models[0].name if spec.models else "MODEL"}", '
        '"messages": [{"role": "user", "content": "Hi"}]}\'',
        "health: /health   ready: /ready   metrics: /metrics   docs: /docs",
        f"auth: {auth}",
        f"policy: {_policy_line(catalog)}",
        f"tracing: {tracing}" if tracing else "tracing: off (set OTEL_EXPORTER_OTLP_ENDPOINT)",
        *([cluster] if cluster else []),
    ]
    return Panel(Group(*lines, "", table), title="cloudlet", expand=False)


def _policy_line(catalog: Catalog) -> str:
    policy = catalog.policy
    if policy is None:
        return "no openness policy (any model may be served)"
    rules = []
    if policy.min_mof_class is not None:
        rules.append(f"MOF class {policy.min_mof_class} or better")
    if policy.licenses.allow:
        rules.append("licences " + ", ".join(policy.licenses.allow))
    if policy.licenses.deny:
        rules.append("never " + ", ".join(policy.licenses.deny))
    return f"openness {'; '.join(rules) or 'any'} (on violation: {policy.on_violation})"


def _short(source: str) -> str:
    return source if len(source) <= 60 else "…" + source[-59:]
