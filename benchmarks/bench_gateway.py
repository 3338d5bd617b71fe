"""Gateway overhead (issues #4 and #5): the same fast upstream called directly, through cloudlet
(without and with API keys, limits and the ledger), and through LiteLLM's proxy, in one run, one
worker process each.

The upstream is nginx returning a fixed chat completion (JSON for the direct and LiteLLM calls;
the same completion as SSE for cloudlet, which always streams from upstreams), or the Python
fake upstream of the tests when nginx is not installed. Load comes from ``wrk`` (C, one thread),
so the load generator takes as little of the machine as possible: p50 latency with 1 client
and requests/s with 32 clients, per side, sides interleaved round by round.

"cloudlet+tracing" is the "cloudlet" side with OpenTelemetry tracing configured the standard
way (``OTEL_EXPORTER_OTLP_ENDPOINT``), exporting every request's spans to a local OTLP/HTTP
receiver (a location of the same nginx, which answers 200 and logs each export; or
tests/otlp_receiver.py without nginx): its requests/s against the "cloudlet" side's is the cost
of tracing (target: at most 10 % fewer).

    python benchmarks/bench_gateway.py [--duration 10] [--rounds 2] [--no-litellm]

LiteLLM is installed, when missing, into its own venv (--litellm-venv, /tmp/litellm-venv).
Results go to docs/benchmarks.md, section "Gateway overhead (issue #4)".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
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
SECTION = "## Gateway overhead (issue #4)"
KEY = "sk-bench-" + "5e" * 32  # LiteLLM refuses to start without a strong master key
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there!"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


QUIET_UVICORN = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


def sse_completion() -> str:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000}
    base["model"] = "bench-model"
    deltas = [{"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": " there!"}]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": COMPLETION["usage"]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def bench_spec(sse_base: str, *, keys: bool, upstream_key: bool = False) -> str:
    """The spec of a single cloudlet in front of the upstream (``sse_base``): routing only, or
    with keys, limits and a ledger (SQLite at the default place); ``upstream_key`` sends the
    upstream a key from ``$BENCH_KEY``, as this benchmark's sides do."""
    key = "    api_key: ${BENCH_KEY}\n" if upstream_key else ""
    return (
        f"server: {{log_level: warning}}\nstorage: {{ledger: {'null' if keys else 'off'}}}\n"
        "models:\n  - name: bench\n    engine: openai\n"
        f"    url: {sse_base}\n    upstream_model: bench-model\n{key}"
        "    health_check: {interval_s: 0}\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


@contextlib.contextmanager
def running(
    args: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        # Tracing is on only where a side asks for it (OTEL_* of this shell is not passed on).
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**base, **(env or {})}
        )
        try:
            wait_ready(ready_url, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _nginx_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


@contextlib.contextmanager
def upstream(tmp: Path) -> Iterator[tuple[str, str, str]]:
    """(JSON base URL, SSE base URL) of a fast fixed-answer upstream, and the base URL of an
    OTLP/HTTP trace receiver (``POST /v1/traces``)."""
    port = free_port()
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        args = [sys.executable, str(ROOT / "tests" / "fakes_upstream.py"), "--port", str(port)]
        base = f"http://127.0.0.1:{port}/v1"
        rport = free_port()
        receiver = [sys.executable, str(ROOT / "tests" / "otlp_receiver.py"), "--port", str(rport)]
        with (
            running(args, base + "/models", tmp / "upstream.log"),
            running(receiver, f"http://127.0.0.1:{rport}/", tmp / "receiver.log"),
        ):
            yield base, base, f"http://127.0.0.1:{rport}"
        return
    models = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
master_process off;
daemon off;
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json; return 200 {_nginx_string(json.dumps(COMPLETION))};
        }}
        location = /sse/v1/chat/completions {{
            default_type text/event-stream; return 200 {_nginx_string(sse_completion())};
        }}
        location ~ /models$ {{ default_type application/json; return 200 {_nginx_string(models)}; }}
        location = /v1/traces {{
            access_log {tmp}/otlp-exports.log;
            default_type application/x-protobuf; return 200 "";
        }}
    }}
}}
"""
    )
    base = f"http://127.0.0.1:{port}"
    with running(
        [nginx, "-c", str(conf), "-p", str(tmp)], base + "/v1/models", tmp / "upstream.log"
    ):
        yield base + "/v1", base + "/sse/v1", base


def ensure_litellm(venv: Path) -> Path:
    """LiteLLM's proxy in its own venv, with httptools as cloudlet has (both get uvloop)."""
    exe = venv / "bin" / "litellm"
    python = str(venv / "bin" / "python")
    if not exe.exists():
        print(f"installing LiteLLM's proxy into {venv} (a few minutes)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    has = subprocess.run([python, "-c", "import httptools"], capture_output=True)
    if has.returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", "httptools"], check=True)
    return exe


def litellm_version(venv: Path) -> str:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def paired(rounds: dict[str, list[float]], side: str, other: str) -> float:
    """The median over rounds of ``side``'s requests/s over ``other``'s in the same round: a
    machine whose speed drifts between rounds moves both sides of a round alike."""
    return statistics.median(a / b for a, b in zip(rounds[side], rounds[other], strict=True))


def fewer_or_more(fewer: float) -> str:
    return f"{fewer:.0%} fewer" if fewer >= 0 else f"{-fewer:.0%} more"


def wrk(
    url: str, connections: int, duration: int, tmp: Path, key: str = KEY
) -> tuple[float, float, int]:
    """(p50 ms, requests/s, non-2xx) of POST BODY to url with `connections` connections."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    for _ in range(3):  # wrk now and then reports every latency as 0.00us: run it again
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if p50 is None or float(p50.group(1)) > 0:
            break
        print(f"wrk reported a p50 of 0 for {url} at {connections} clients: again", flush=True)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if p50 is None or rps is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return (
        float(p50.group(1)) * _UNITS[p50.group(2)],
        float(rps.group(1)),
        int(bad.group(1)) if bad else 0,
    )


#: Throughput runs go in this order ("@": a revision's side): each compared pair is adjacent,
#: or one run apart (LiteLLM against cloudlet needs no precision: an order of magnitude apart).
_ORDER = ("direct", "cloudlet+keys@", "cloudlet+keys", "cloudlet", "cloudlet+tracing", "cloudlet@")


def _adjacent(side: str) -> int:
    """The position of ``side`` in the throughput runs (LiteLLM last)."""
    name, at, _ = side.partition("@")
    return _ORDER.index(name + at) if name + at in _ORDER else len(_ORDER)


def own_cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:  # a child that just exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """:func:`own_cpu_seconds` of the process and of its running children (the span exporter
    process, with tracing on)."""
    children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children"))
    return own_cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children.split())


def tenant_key(chat_url: str) -> str:
    """A team's API key with limits high enough never to refuse, made through the admin API."""
    admin = chat_url.replace("/v1/chat/completions", "/admin/keys")
    limits = {"team": "bench", "rpm": 2 * 10**9, "tpm": 2 * 10**9, "budget": "1000000"}  # < 2^31
    r = httpx.post(admin, json=limits, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    r.raise_for_status()
    return str(r.json()["key"])


def check(url: str, key: str = KEY) -> None:
    r = httpx.post(url, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    r.raise_for_status()
    assert r.json()["choices"][0]["message"]["content"] == "Hello there!", r.text


def trace_exports(tmp: Path, receiver: str) -> int:
    """How many OTLP export requests the receiver answered (nginx logs each one; the Python
    receiver is asked)."""
    log = tmp / "otlp-exports.log"
    if log.exists():
        return sum(1 for line in log.read_text().splitlines() if "POST /v1/traces" in line)
    r = httpx.get(receiver + "/exports", timeout=10)
    r.raise_for_status()
    return int(r.text)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(path: Path, section: str, title: str = SECTION) -> None:
    """Replace our section (up to the next ``## ``) or append it; other sections stay."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if title in text:
        head, _, rest = text.partition(title)
        nxt = rest.find("\n## ")
        text = head + section.rstrip("\n") + "\n\n" + (rest[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument("--litellm-venv", type=Path, default=Path("/tmp/litellm-venv"))
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--baseline-rev",
        default=None,
        help="also run cloudlet at this git revision (a worktree), side by side: before/after",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with (
        tempfile.TemporaryDirectory(prefix="bench-gateway-") as name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(name)
        json_base, sse_base, receiver = stack.enter_context(upstream(tmp))
        sides = {"direct": json_base + "/chat/completions"}

        env = {"BENCH_KEY": "sk-upstream", "COLUMNS": "200", "XDG_DATA_HOME": str(tmp / "data")}
        # "cloudlet": routing only (storage.ledger: off); "cloudlet+keys": the same with an API
        # key checked, its limits reserved and settled, and a ledger row (SQLite) per request;
        # "cloudlet+tracing": routing only, every request's spans exported to the receiver.
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver, "OTEL_SERVICE_NAME": "cloudlet-bench"}
        pids: dict[str, subprocess.Popen[bytes]] = {}  # cloudlet sides: their CPU is measured
        trees: dict[str, Path | None] = {"": None}
        if args.baseline_rev is not None:
            base = tmp / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base),
                 args.baseline_rev], check=True,
            )  # fmt: skip
            stack.callback(
                subprocess.run,
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
            )
            trees[f"@{args.baseline_rev}"] = base
        configs = [
            (side + suffix, with_keys, extra, tree)
            for side, with_keys, extra in (
                ("cloudlet", False, {}),
                ("cloudlet+keys", True, {}),
                ("cloudlet+tracing", False, tracing),
            )
            for suffix, tree in trees.items()
            if tree is None or not extra  # the baseline: routing and keys, not tracing
        ]
        for side, with_keys, extra, tree in configs:
            port = free_port()
            spec = tmp / f"{side}.yaml"
            spec.write_text(bench_spec(sse_base, keys=with_keys, upstream_key=True))
            command = [sys.executable, "-m", "cloudlet", "serve", "--config", str(spec)]
            command += ["--port", str(port)]
            pids[side] = stack.enter_context(
                running(
                    command,
                    f"http://127.0.0.1:{port}/ready",
                    tmp / f"{side}.log",
                    # each side its own default ledger (a revision may not know another's schema)
                    {**env, "CLOUDLET_ADMIN_KEY": KEY, "XDG_DATA_HOME": str(tmp / side / "data")}
                    | extra
                    | ({"PYTHONPATH": str(tree / "src")} if tree is not None else {}),
                )
            )
            sides[side] = f"http://127.0.0.1:{port}/v1/chat/completions"
        keys = {side: KEY for side in sides}
        for side in sides:
            if side.startswith("cloudlet+keys"):
                keys[side] = tenant_key(sides[side])

        version = ""
        if not args.no_litellm:
            exe = ensure_litellm(args.litellm_venv)
            version = litellm_version(args.litellm_venv)
            lport = free_port()
            config = tmp / "litellm.yaml"
            config.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n"
                "      model: openai/bench-model\n"
                f"      api_base: {json_base}\n      api_key: sk-upstream\n"
            )
            lenv = {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_MASTER_KEY": KEY,
            }
            # Access logs off on both sides (cloudlet runs at log_level warning): a log line per
            # request would measure the logging, not the gateway.
            logs = tmp / "litellm-logging.json"
            logs.write_text(json.dumps(QUIET_UVICORN))
            largs = [str(exe), "--config", str(config), "--port", str(lport), "--num_workers", "1"]
            largs += ["--log_config", str(logs)]
            stack.enter_context(
                running(
                    largs, f"http://127.0.0.1:{lport}/health/liveliness", tmp / "litellm.log", lenv
                )
            )
            sides["litellm"] = f"http://127.0.0.1:{lport}/v1/chat/completions"

        for side, url in sides.items():
            check(url, keys.get(side, KEY))
            wrk(url, 8, 2, tmp, keys.get(side, KEY))  # warm-up
        p50s: dict[str, list[float]] = {s: [] for s in sides}
        rps: dict[str, list[float]] = {s: [] for s in sides}
        cpu: dict[str, list[float]] = {s: [] for s in pids}
        own: dict[str, list[float]] = {s: [] for s in pids}  # the server process alone
        for round_ in range(args.rounds):
            # Latency at 1 client, then throughput at 32, in an order that puts the sides
            # compared next to each other, reversed every other round: a machine whose speed
            # drifts (a VM's neighbours) then moves both sides of a pair alike.
            for side, url in sides.items():
                p50, _, bad = wrk(url, 1, args.duration, tmp, keys.get(side, KEY))
                if bad:
                    raise RuntimeError(f"{side}: {bad} failed requests")
                if p50 > 0:  # wrk's all-zero latency report, even after retries: no sample
                    p50s[side].append(p50)
            order = sorted(sides, key=_adjacent)
            for side in order if round_ % 2 == 0 else reversed(order):
                pid = pids[side].pid if side in pids else 0
                before = (cpu_seconds(pid), own_cpu_seconds(pid)) if pid else (0.0, 0.0)
                _, r, bad = wrk(sides[side], 32, args.duration, tmp, keys.get(side, KEY))
                if bad:
                    raise RuntimeError(f"{side}: {bad} failed requests")
                rps[side].append(r)
                if side in pids:  # the server's own CPU per request: robust to other load
                    served = r * args.duration
                    cpu[side].append((cpu_seconds(pid) - before[0]) / served * 1e6)
                    own[side].append((own_cpu_seconds(pid) - before[1]) / served * 1e6)
                print(
                    f"round {round_ + 1} {side:16s} p50@1 {(p50s[side] or [0.0])[-1]:7.2f} ms   "
                    f"{r:8.0f} req/s @32"
                    + (f"   {cpu[side][-1]:6.0f} us CPU/request" if side in pids else ""),
                    flush=True,
                )
        exports = trace_exports(tmp, receiver)
        dropped = (tmp / "cloudlet+tracing.log").read_text(errors="replace").count("dropped")

    if exports == 0:
        raise RuntimeError("cloudlet+tracing exported no spans: the tracing side measured nothing")
    med_p50 = {s: statistics.median(v or [0.0]) for s, v in p50s.items()}
    med_rps = {s: statistics.median(v) for s, v in rps.items()}
    med_cpu = {s: statistics.median(v) for s, v in cpu.items()}
    med_own = {s: statistics.median(v) for s, v in own.items()}
    section = report(args, med_p50, med_rps, version, rps, (med_cpu, med_own), (exports, dropped))
    write_section(args.out, section)
    print(section)


def report(
    args: argparse.Namespace,
    p50: dict[str, float],
    rps: dict[str, float],
    version: str,
    rounds: dict[str, list[float]],
    cpus: tuple[dict[str, float], dict[str, float]],
    traced: tuple[int, int] = (0, 0),
) -> str:
    cpu, own = cpus
    upstream_kind = (
        "nginx 1 worker"
        if shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
        else "Python fake"
    )
    rows = [
        "| path | p50 @ 1 client | added p50 | requests/s @ 32 clients | server CPU / request |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in p50:
        extra = "" if side == "direct" else f"+{p50[side] - p50['direct']:.2f} ms"
        used = f"{cpu[side]:.0f} us" if side in cpu else ""
        rows.append(f"| {side} | {p50[side]:.2f} ms | {extra} | {rps[side]:.0f} | {used} |")
    baseline = args.baseline_rev
    added = p50["cloudlet"] - p50["direct"]
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {machine()}; upstream: {upstream_kind} "
        f"returning a fixed completion; load: wrk, 1 thread, {args.duration} s per run, median of "
        f"{args.rounds} interleaved rounds; one worker process per side"
        + (f"; LiteLLM {version}" if version else "")
        + "; access logs off, uvloop and httptools on both servers. "
        "cloudlet streams from the upstream (SSE) and answers the non-streaming client.",
        "",
        *rows,
        "",
        f"- cloudlet adds {added:.2f} ms at p50 with 1 client (target <= 1 ms: "
        f"{'met' if added <= 1.0 else 'not met'}).",
    ]
    if "cloudlet+keys" in rps:
        slower = 1 - paired(rounds, "cloudlet+keys", "cloudlet")
        lines.append(
            f"- With an API key, its limits and budget, and a ledger row per request, cloudlet "
            f"serves {rps['cloudlet+keys']:.0f} requests/s at 32 clients, {fewer_or_more(slower)} "
            f"than without them (target: within 20 %: {'met' if slower <= 0.20 else 'not met'}); "
            f"p50 at 1 client {p50['cloudlet+keys']:.2f} ms against {p50['cloudlet']:.2f} ms."
        )
    if baseline is not None:
        for side in ("cloudlet", "cloudlet+keys"):
            before = f"{side}@{baseline}"
            lines.append(
                f"- {side} against itself at {baseline} (before): added p50 "
                f"{p50[side] - p50['direct']:+.2f} ms vs {p50[before] - p50['direct']:+.2f} ms; "
                f"requests/s at 32 clients {paired(rounds, side, before):.2f}x; server CPU per "
                f"request {cpu[side]:.0f} us vs {cpu[before]:.0f} us."
            )
    if "cloudlet+tracing" in rps:
        fewer = 1 - paired(rounds, "cloudlet+tracing", "cloudlet")
        per_round = [
            1 - t / c for t, c in zip(rounds["cloudlet+tracing"], rounds["cloudlet"], strict=True)
        ]
        lines.append(
            f"- With OpenTelemetry tracing on (OTEL_EXPORTER_OTLP_ENDPOINT; a request span and an "
            f"upstream attempt span per request, exported over OTLP/HTTP to a local receiver in "
            f"{traced[0]} batches), cloudlet serves {rps['cloudlet+tracing']:.0f} requests/s at 32 "
            f"clients, {fewer_or_more(fewer)} than without (target: at most 10 % fewer: "
            f"{'met' if fewer <= 0.10 else 'not met'}; fewer per round "
            + ", ".join(f"{f:.0%}" for f in per_round)
            + f"); p50 at 1 client {p50['cloudlet+tracing']:.2f} ms against "
            f"{p50['cloudlet']:.2f} ms"
            + (f"; the SDK reported dropped spans {traced[1]} times" if traced[1] else "")
            + (
                f"; CPU per request {cpu['cloudlet+tracing']:.0f} us against "
                f"{cpu['cloudlet']:.0f} us, of which {own['cloudlet+tracing']:.0f} us in the "
                f"server process and {cpu['cloudlet+tracing'] - own['cloudlet+tracing']:.0f} us "
                f"in its span exporter process."
            )
        )
    if "litellm" in rps:
        ratio = paired(rounds, "cloudlet", "litellm")
        per_round = [c / w for c, w in zip(rounds["cloudlet"], rounds["litellm"], strict=True)]
        lines.append(
            f"- cloudlet serves {ratio:.1f}x LiteLLM's requests/s at 32 clients (target >= 10x: "
            f"{'met' if ratio >= 10 else 'not met'}; per round "
            + ", ".join(f"{r:.1f}x" for r in per_round)
            + f"); LiteLLM's p50 at 1 client is {p50['litellm'] / p50['cloudlet']:.1f}x cloudlet's."
        )
    lines += [
        "",
        "Reproduce: `python benchmarks/bench_gateway.py` (needs wrk; nginx if installed; "
        "installs LiteLLM into /tmp/litellm-venv when missing)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
