"""`cloudlet operator`: reconcile Model resources into engine Deployments and Services."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudlet.cli.common import fail, setup_logging
from cloudlet.kube.settings import (
    DEFAULT_IMAGE,
    DEFAULT_VLLM_IMAGE,
    EngineSettings,
    OperatorSettings,
)


def operator(
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", envvar="POD_NAMESPACE", help="Namespace to watch.")
    ] = "default",
    engine_image: Annotated[
        str, typer.Option(help="Image of llama.cpp engines (a Model's spec.image overrides).")
    ] = DEFAULT_IMAGE,
    vllm_image: Annotated[str, typer.Option(help="Image of vLLM engines.")] = DEFAULT_VLLM_IMAGE,
    liveness: Annotated[
        str | None, typer.Option(help="host:port to serve /healthz on, for a liveness probe.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the Model operator (kopf) in one namespace; one replica at a time."""
    setup_logging(log_level, "error")
    try:
        from cloudlet.kube.operator import run_operator  # kopf is heavy: only when asked for
    except ImportError as exc:
        fail(f"the operator needs kopf: pip install 'cloudlet[kube]' ({exc.name})")

    run_operator(
        OperatorSettings(
            namespace=namespace,
            engine=EngineSettings(image=engine_image, vllm_image=vllm_image),
            liveness=liveness,
        )
    )
