"""`cloudlet chat` and `cloudlet models`: talk to a running server, or run the model here."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import httpx
import typer
from rich.table import Table

from cloudlet.cli.common import ConfigOption, console, fail, setup_logging, spec_or_exit
from cloudlet.config import Spec
from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, SamplingParams, TextDelta
from cloudlet.errors import CloudletError

UrlOption = Annotated[
    str | None,
    typer.Option(
        help="Base URL of a running server, e.g. http://127.0.0.1:8080/v1 "
        "(default: run the model here)",
        envvar="CLOUDLET_URL",
    ),
]

ApiKeyOption = Annotated[
    str | None,
    typer.Option(envvar="CLOUDLET_API_KEY", help="API key for --url.", show_default=False),
]


def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id.")] = None,
    url: UrlOption = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    api_key: ApiKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Stream an answer to the terminal (a model or a route of the spec, or of --url)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    if url:
        _chat_remote(url, api_key, model or "smollm2", messages, max_tokens, temperature, seed)
        return
    spec = spec_or_exit(config)
    setup_logging("warning", spec.server.engine_log_level)
    name = model or next((m.name for m in spec.models if m.kind == "chat"), None)
    route = next((r for r in spec.routes if r.name == name), None)
    targets = [spec.model(t.model) for t in route.targets] if route is not None else []
    model_spec = spec.model(name) if name else None
    picked = [m for m in targets if m is not None] or ([model_spec] if model_spec else [])
    if not picked or any(m.kind != "chat" for m in picked):
        fail(f"no chat model or route {name!r} in the spec; `cloudlet models` lists them")
    request = GenerationRequest(
        model=ModelId(str(name)),
        messages=tuple(ChatMessage(m["role"], m["content"]) for m in messages),
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=temperature, seed=seed),
    )
    # A route runs as the server runs it (policy, failover), over just its own targets.
    local = spec.model_copy(update={"models": picked, "routes": [route] if route else []})
    try:
        asyncio.run(_chat_local(local, request))
    except CloudletError as exc:
        fail(exc.message)


async def _chat_local(spec: Spec, request: GenerationRequest) -> None:
    from cloudlet.engines.factory import build_engine
    from cloudlet.gateway import Gateway

    # The models load in supervised worker processes, as under `cloudlet serve`: a CPU whose
    # llama.cpp kernels crash (AMX on some Xeons) costs a restart in safe mode, not this process.
    gateway = Gateway({m.name: build_engine(m) for m in spec.models}, spec)
    out = console()
    with out.status(f"loading {', '.join(m.name for m in spec.models)}…"):
        await gateway.start()
    try:
        generation = await gateway.generate(request)
        async for event in generation.events:
            if isinstance(event, TextDelta):
                out.print(event.text, end="", markup=False, highlight=False)
        out.print()
    finally:
        await gateway.close()


def _chat_remote(
    url: str,
    api_key: str | None,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float,
    seed: int | None,
) -> None:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        **({"seed": seed} if seed is not None else {}),
    }
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out = console()
    try:
        with httpx.stream(
            "POST", url.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=300
        ) as response:
            if response.status_code != 200:
                response.read()
                fail(f"{response.status_code}: {_error_message(response)}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    error = data["error"]
                    fail(str(error.get("message") if isinstance(error, dict) else error))
                for choice in data.get("choices", []):
                    text = choice.get("delta", {}).get("content")
                    if text:
                        out.print(text, end="", markup=False, highlight=False)
        out.print()
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def models(
    url: UrlOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    api_key: ApiKeyOption = None,
) -> None:
    """List the models (of the spec, or of a running server with --url)."""
    if url:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = httpx.get(url.rstrip("/") + "/models", headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            fail(f"cannot list models at {url}: {exc}")
        if response.status_code != 200:
            fail(f"cannot list models at {url}: {response.status_code}: {_error_message(response)}")
        rows = response.json()["data"]
    else:
        spec = spec_or_exit(config)
        rows = [
            {
                "id": m.name,
                "kind": m.kind,
                "engine": m.engine,
                "context_length": m.context,
                "source": m.source,
            }
            for m in spec.models
        ]
    if as_json:
        console().print_json(json.dumps(rows))
        return
    table = Table(title="models")
    columns = ["id", "kind", "engine", "context_length", "source" if not url else "status"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console().print(table)
