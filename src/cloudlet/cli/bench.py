"""``cloudlet bench``: load any running OpenAI-compatible server and report how it held up.

    cloudlet bench [--url http://127.0.0.1:8080/v1] [--model ID] [--api-key KEY]
                   [--concurrency 8] [--requests 64] [--max-tokens 64]
                   [--prompt TEXT | --prompts-file FILE] [--stream/--no-stream] [--json]

Sends ``--requests`` chat completions with ``--concurrency`` in flight (streamed by default, so
the time to the first token is measured), then prints requests ok/failed (by status), wall
time, requests/s, output tokens/s (from the usage the server reports), TTFT, end-to-end latency
and inter-token latency percentiles, as a table or, with ``--json``, one JSON object. The
numbers themselves are computed by ``cli/bench_stats.py``.

A server that cannot be reached, refuses the key (401/403) or does not know the model (404)
ends the run early with one line on stderr and exit code 1; so does a run in which every
request failed. Other failures (500, 429, dropped streams) are counted and reported.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from cloudlet.cli.bench_client import Plan, describe, error_message, one_request
from cloudlet.cli.bench_stats import Percentiles, RequestResult, Summary, summarize
from cloudlet.cli.common import console
from cloudlet.errors import CloudletError

DEFAULT_URL = "http://127.0.0.1:8080/v1"
DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
#: Statuses that would fail every other request the same way: stop and say so.
FATAL = {401: "check --api-key", 403: "check --api-key", 404: "is the model served there?"}


class BenchError(CloudletError):
    """The run cannot go on (server unreachable, key refused, no model): one line, exit 1."""


def bench(
    url: Annotated[
        str, typer.Option(help="Base URL of the server to load.", envvar="CLOUDLET_URL")
    ] = DEFAULT_URL,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model id (default: the first of GET /models)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar=["CLOUDLET_API_KEY", "OPENAI_API_KEY"], help="API key (Bearer)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 8,
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Requests to send in all.")
    ] = 64,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of every request.")] = 64,
    prompt: Annotated[
        str | None, typer.Option(help="The user message (default: a short story request).")
    ] = None,
    prompts_file: Annotated[
        Path | None,
        typer.Option(help="User messages, one per line, used in turn (instead of --prompt)."),
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Stream, and measure TTFT and ITL.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds allowed per request.")] = 300,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load a running OpenAI-compatible server (cloudlet, vLLM, Ollama ...) and measure it."""
    prompts = _prompts(prompt, prompts_file)
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        chosen = model or _first_model(base, headers, timeout)
        plan = Plan(
            base, chosen, prompts, requests, concurrency, max_tokens, stream, headers, timeout
        )
        summary = asyncio.run(_run(plan, _progress(console(stderr=True))))
    except BenchError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    if summary.ok == 0:
        _fail(f"all {summary.requests} requests to {base} failed: {summary.headline_error()}")
    if json_:
        typer.echo(json.dumps(_as_json(plan, summary), indent=2))
    else:
        console().print(_table(plan, summary))


def _fail(message: str, code: int = 1) -> NoReturn:
    """``fail``, on one line however narrow the terminal, and with the server's words verbatim."""
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _prompts(prompt: str | None, prompts_file: Path | None) -> tuple[str, ...]:
    if prompt is not None and prompts_file is not None:
        _fail("give --prompt or --prompts-file, not both", 2)
    if prompts_file is None:
        return (prompt if prompt is not None else DEFAULT_PROMPT,)
    try:
        lines = prompts_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read --prompts-file {prompts_file}: {exc}", 2)
    prompts = tuple(line for line in lines if line.strip())
    if not prompts:
        _fail(f"--prompts-file {prompts_file} has no prompts (one per line)", 2)
    return prompts


def _first_model(base: str, headers: dict[str, str], timeout: float) -> str:
    try:
        response = httpx.get(base + "/models", headers=headers, timeout=min(timeout, 30))
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot reach {base}: {describe(exc)}") from None
    if response.status_code != 200:
        hint = FATAL.get(response.status_code, "pass --model")
        raise BenchError(
            f"{response.status_code} from {base}/models: {error_message(response)} ({hint})"
        )
    try:
        return str(response.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise BenchError(f"{base}/models lists no model; pass --model") from None


def _progress(err: Console) -> Progress:
    return Progress(
        TextColumn("bench"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


async def _run(plan: Plan, progress: Progress) -> Summary:
    """Send the plan's requests, ``concurrency`` workers taking the next one when free."""
    results: list[RequestResult] = []
    fatal: list[str] = []
    todo = iter(range(plan.requests))  # shared by the workers, all on this one loop
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=None)

    async def worker(client: httpx.AsyncClient, task: TaskID) -> None:
        for i in todo:
            if fatal:
                return
            result = await one_request(client, plan, plan.prompts[i % len(plan.prompts)])
            results.append(result)
            progress.advance(task)
            code = int(result.failure) if result.failure and result.failure.isdigit() else 0
            if code in FATAL:
                fatal.append(
                    f"{code} from {plan.url}/chat/completions for model {plan.model!r}: "
                    f"{result.message} ({FATAL[code]})"
                )

    async with httpx.AsyncClient(
        base_url=plan.url, headers=plan.headers, timeout=plan.timeout_s, limits=limits
    ) as client:
        with progress:
            task = progress.add_task("requests", total=plan.requests)
            start = time.perf_counter()
            workers = min(plan.concurrency, plan.requests)
            await asyncio.gather(*(worker(client, task) for _ in range(workers)))
            wall_s = time.perf_counter() - start
    if fatal:
        raise BenchError(fatal[0])
    return summarize(results, wall_s)


def _as_json(plan: Plan, summary: Summary) -> dict[str, Any]:
    setup = {
        "url": plan.url,
        "model": plan.model,
        "stream": plan.stream,
        "concurrency": plan.concurrency,
        "max_tokens": plan.max_tokens,
    }
    return setup | summary.as_json()


def _table(plan: Plan, s: Summary) -> Table:
    table = Table(title="cloudlet bench", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value")
    mode = "streaming" if plan.stream else "not streaming"
    table.add_row("server", Text(f"{plan.url}, model {plan.model}"))
    load = f"{s.requests} requests, {plan.concurrency} in flight, {mode}"
    table.add_row("load", f"{load}, max_tokens {plan.max_tokens}")
    failed = f"{s.failed} failed"
    if s.failed_by:
        failed += " (" + ", ".join(f"{k}: {n}" for k, n in s.failed_by.items()) + ")"
    table.add_row("requests", f"{s.ok} ok, {failed}")
    table.add_row("wall time", f"{s.wall_s:.2f} s")
    table.add_row("requests/s", f"{s.requests_per_s:.2f}")
    tokens = f"{s.output_tokens_per_s:.1f}"
    if s.requests_without_usage:
        tokens += f" ({s.requests_without_usage} answers came without usage: not counted)"
    table.add_row("output tokens/s", tokens)
    if plan.stream:
        table.add_row("TTFT p50 / p90 / p99", _ms(s.ttft))
    table.add_row("latency p50 / p90 / p99", _ms(s.latency))
    if plan.stream:
        table.add_row("inter-token p50", _ms1(s.itl.p50))
    for kind, message in s.errors.items():
        table.add_row(f"error {kind}", Text(message))
    return table


def _ms(p: Percentiles) -> str:
    values = (p.p50, p.p90, p.p99)
    if all(v is None for v in values):
        return "-"
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values) + " ms"


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
