"""`cloudlet deploy`: the spec a laptop runs, as Kubernetes manifests (printed or applied)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from cloudlet.cli.common import EXIT_BAD_SPEC, ConfigOption, console, fail, spec_or_exit
from cloudlet.errors import SpecError
from cloudlet.kube.render import Rendered, render
from cloudlet.kube.settings import DEFAULT_IMAGE, RenderSettings


class AutoscalerChoice(StrEnum):
    hpa = "hpa"
    keda = "keda"


def deploy(
    config: ConfigOption = None,
    render_only: Annotated[
        bool, typer.Option("--render", help="Print the manifests (multi-document YAML).")
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Apply them to the cluster (server-side apply).")
    ] = False,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace of every namespaced object.")
    ] = "default",
    image: Annotated[
        str, typer.Option(help="cloudlet image for the gateway, operator and llama.cpp engines.")
    ] = DEFAULT_IMAGE,
    autoscaler: Annotated[
        AutoscalerChoice,
        typer.Option(help="Per-model autoscaler: an HPA on an external metric, or KEDA."),
    ] = AutoscalerChoice.hpa,
    secret: Annotated[
        str, typer.Option(help="Secret holding the values of the spec's ${VARIABLES}.")
    ] = "cloudlet-secrets",  # noqa: S107 - the name of a Secret, not a secret
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig for --apply [default: $KUBECONFIG or ~/.kube]")
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context for --apply.")] = None,
    monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring",
            help="Add a ServiceMonitor for /metrics and a Grafana dashboard ConfigMap "
            "(needs the Prometheus Operator's CRDs).",
        ),
    ] = False,
) -> None:
    """Render the spec as Kubernetes manifests (--render) or apply them (--apply)."""
    if render_only == apply:
        fail("give exactly one of --render or --apply", EXIT_BAD_SPEC)
    spec = spec_or_exit(config)
    settings = RenderSettings(
        namespace=namespace,
        image=image,
        autoscaler=autoscaler.value,
        secret_name=secret,
        monitoring=monitoring,
    )
    try:
        rendered = render(spec, settings, source=str(config) if config else "the spec")
    except SpecError as exc:
        err = console(stderr=True)
        err.print(f"[bold red]error:[/] invalid spec in [bold]{exc.source}[/]")
        for field, why in exc.problems:
            err.print(f"  [cyan]{field}[/]: {why}", markup=True, highlight=False)
        raise typer.Exit(EXIT_BAD_SPEC) from None
    for warning in rendered.warnings:
        console(stderr=True).print(f"[yellow]warning:[/] {warning}", highlight=False)
    if render_only:
        typer.echo(rendered.yaml(), nl=False)
        return
    asyncio.run(_apply(rendered, kubeconfig, context))


async def _apply(rendered: Rendered, kubeconfig: str | None, context: str | None) -> None:
    try:
        from cloudlet.kube.apply import apply_manifests
        from cloudlet.kube.client import KubeApiError, KubeClient
    except ImportError as exc:
        fail(f"--apply needs the Kubernetes client: pip install 'cloudlet[kube]' ({exc.name})")

    try:
        async with await KubeClient.connect(kubeconfig=kubeconfig, context=context) as api:
            async for applied in apply_manifests(api, rendered.manifests):
                typer.echo(f"{applied} serverside-applied")
    except KubeApiError as exc:
        fail(exc.message)
