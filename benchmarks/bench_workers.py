"""Engine workers (issue #11): what the gateway adds to a fast upstream while the embedded
engine is busy, with the engine in the gateway process (before) and in a worker (now).

One cloudlet serves two models: ``bench`` (SmolLM2 on the embedded engine, parallel 8) and
``fast`` (a remote engine in front of a fixed-answer upstream: nginx, or the tests' Python
fake). For each cloudlet — this tree, and the one at ``--baseline-rev`` (a git worktree, run
from its sources) — and each round, the sides interleaved:

* idle: sequential requests alternate between the upstream directly and ``fast`` through
  cloudlet; the added p50 is the difference of the medians;
* busy: the same while ``cloudlet bench`` (another process) keeps 8 streams running on
  ``bench``;
* restart (this tree only): the ``bench`` worker killed with SIGKILL under that load, and the
  seconds until ``/ready`` answers 200 again.

Before issue #11 the decode loop shared the gateway's process and GIL with every HTTP request;
with a worker process it shares only the machine's cores.

    python benchmarks/bench_workers.py --baseline-rev 194ddd9 [--rounds 3] [--requests 200]

Results go to docs/benchmarks.md, section "Engine workers (issue #11)".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_batching as batching
import bench_gateway as gateway

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Engine workers (issue #11)"
BODY = {"model": "fast", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}


def spec_text(model: Path, sse_base: str) -> str:
    return (
        'server: {log_level: warning}\nstorage: {ledger: "off"}\nmodels:\n'
        f"  - {{name: bench, source: 'file://{model}', context: 1024, parallel: 8}}\n"
        f"  - {{name: fast, engine: openai, url: '{sse_base}', upstream_model: bench-model}}\n"
    )


@contextlib.contextmanager
def cloudlet(name: str, spec: Path, tmp: Path, src: Path | None) -> Iterator[str]:
    port = gateway.free_port()
    env = {"PYTHONPATH": str(src)} if src is not None else {}
    args = [sys.executable, "-m", "cloudlet", "serve", "-c", str(spec), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with gateway.running(args, base + "/ready", tmp / f"{name}.log", env):
        yield base + "/v1"


def added_p50(client: httpx.Client, direct: str, through: str, requests: int) -> float:
    """Median latency through cloudlet minus median latency direct, alternating, in ms."""
    times: dict[str, list[float]] = {direct: [], through: []}
    for i in range(requests * 2):
        url = direct if i % 2 == 0 else through
        started = time.perf_counter()
        r = client.post(url + "/chat/completions", json=BODY)
        times[url].append(time.perf_counter() - started)
        r.raise_for_status()
    return (statistics.median(times[through]) - statistics.median(times[direct])) * 1000


@contextlib.contextmanager
def busy(v1: str) -> Iterator[None]:
    """8 streams on the embedded model, from another process, until the block ends."""
    args = [sys.executable, "-m", "cloudlet", "bench", "--url", v1, "-m", "bench",
            "--concurrency", "8", "--requests", "100000", "--max-tokens", "256"]  # fmt: skip
    load = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until all 8 run
            stats = httpx.get(v1.removesuffix("/v1") + "/stats", timeout=10).json()["bench"]
            if stats["running"] >= 8:
                break
            time.sleep(0.2)
        yield
    finally:
        load.terminate()
        load.wait(30)


def restart_seconds(v1: str) -> float:
    """Kill the embedded model's worker; seconds until the server is ready again."""
    base = v1.removesuffix("/v1")
    pid = httpx.get(base + "/stats", timeout=10).json()["bench"]["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    started = time.perf_counter()
    time.sleep(0.05)
    while httpx.get(base + "/ready", timeout=10).status_code != 200:
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rev", required=True, help="cloudlet before, a git revision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="per side, per round")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    command = "python benchmarks/bench_workers.py " + shlex.join(sys.argv[1:])
    model = batching.default_model()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as name:
        tmp = Path(name)
        tree = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree),
                        args.baseline_rev], check=True)  # fmt: skip
        try:
            with gateway.upstream(tmp) as (json_base, sse_base, _receiver):
                spec = tmp / "cloudlet.yaml"
                spec.write_text(spec_text(model, sse_base))
                sides = {"workers (this tree)": None, f"in-process @{args.baseline_rev}": tree}
                client = httpx.Client(timeout=60)
                for round_ in range(args.rounds):
                    for side, src in sides.items():
                        with cloudlet(side.split()[0], spec, tmp, src and src / "src") as v1:
                            idle = added_p50(client, json_base, v1, args.requests)
                            with busy(v1):
                                loaded = added_p50(client, json_base, v1, args.requests)
                                if src is None:
                                    restart = restart_seconds(v1)
                                    results.setdefault((side, "restart"), []).append(restart)
                        results.setdefault((side, "idle"), []).append(idle)
                        results.setdefault((side, "busy"), []).append(loaded)
                        print(f"round {round_ + 1} {side}: +{idle:.2f} ms idle, "
                              f"+{loaded:.2f} ms busy", file=sys.stderr)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip
    section = render(results, command, args)
    print(section)
    batching.SECTION = SECTION
    batching.write_section(args.out, section)


def render(results: dict[tuple[str, str], list[float]], command: str, a: argparse.Namespace) -> str:
    sides = list(dict.fromkeys(side for side, _ in results))
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {batching.machine()}; {a.rounds} rounds, "
        f"{a.requests} requests per side and round, medians; busy = 8 streams of 256 tokens on "
        "the embedded SmolLM2 from `cloudlet bench` in another process.",
        "",
        "```",
        command,
        "```",
        "",
        "| cloudlet | added p50, idle | added p50, 8 streams busy | per round (busy) |",
        "|---|---:|---:|---|",
    ]
    for side in sides:
        idle, loaded = results[(side, "idle")], results[(side, "busy")]
        rounds = ", ".join(f"{x:+.2f}" for x in loaded)
        lines.append(
            f"| {side} | {statistics.median(idle):+.2f} ms | {statistics.median(loaded):+.2f} ms "
            f"| {rounds} |"
        )
    restarts = results.get((sides[0], "restart"))
    if restarts:
        lines += [
            "",
            f"Worker killed with SIGKILL under that load, back and `/ready` 200 after: "
            f"**{statistics.median(restarts):.1f} s** median (rounds: "
            + ", ".join(f"{x:.1f}" for x in restarts)
            + " s; the first restart waits 1 s of backoff).",
        ]
    if len(sides) == 2:
        now, before = (statistics.median(results[(s, "busy")]) for s in sides)
        ratio = now / before if before else float("nan")
        lines += ["", f"Added p50 while busy, workers vs in-process: **{ratio:.2f}x**."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
